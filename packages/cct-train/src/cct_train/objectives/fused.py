"""The fused path of Lu: the consistency loss of K auxiliary decoders as batched GEMMs in sub-pixel order.

- :func:`fused_consistency_loss`: the consistency loss (any kind of ``cct_losses``: mse, kl, js) of K
  sub-pixel decoders (:class:`SubPixelDecoder`, i.e. ``models.decoders.UpsampleDecoder``) on K perturbed
  inputs, computed as batched matrix products in "sub-pixel order" (no PixelShuffle, no full-resolution
  output kept for the backward pass), back-propagated chunk by chunk in the forward pass. Its value is the
  kind's per-element definition in ``cct_losses.CONSISTENCY_POINTWISE`` (the plain path's too); same value
  and gradients as the plain path (the comment below says why it is exact).
- :func:`subpixel_order`: a ``(B, C, H, W)`` map reordered into that sub-pixel order.
- :class:`SubPixelRows`: one decoder as a callable giving its logits in that order (for I-VAT's power
  iteration, whose loss is also a sum over pixels).

The decoders are read through their parts (``conv1x1``, ``blocks[i].conv`` / ``.relu``), typed by the
protocols :class:`SubPixelDecoder` / :class:`SubPixelBlock`: this module imports nothing of cct_train, at
run time or for type checking (the objective sits below the models that call it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

from cct_losses import CONSISTENCY_KINDS, CONSISTENCY_POINTWISE, confidence_mask

__all__ = [
    "SubPixelDecoder",
    "SubPixelRows",
    "fused_consistency_loss",
    "is_subpixel_decoder",
    "subpixel_order",
]


class SubPixelBlock(Protocol):
    """What this module reads of a sub-pixel block (``models.decoders.SubPixelBlock``): a 1x1 ``conv`` to
    4C and a ``relu`` (``nn.ReLU`` or an identity), before its PixelShuffle(2)."""

    conv: nn.Conv2d
    relu: nn.Module


class SubPixelDecoder(Protocol):
    """What this module reads of a decoder (``models.decoders.UpsampleDecoder``): a 1x1 ``conv1x1`` D -> C,
    then sub-pixel ``blocks``. Structural, so that the objective imports nothing of the models above it."""

    num_classes: int
    conv1x1: nn.Conv2d
    blocks: nn.Sequential


# ------------------------------------------------------------------------------ fused auxiliary decoders
#
# Why this exists (docs/performance.md has the profile). Every layer of an UpsampleDecoder is a 1x1
# convolution, so the decoder maps each low-resolution position of z, on its own, to an
# ``upscale x upscale`` block of C logits: it is a per-pixel MLP whose output rows are then scattered by
# PixelShuffle. The consistency losses (MSE of softmaxes, KL, JS) are sums over pixels, so the ORDER of the
# pixels does not matter as long as the target is put in the same order. Hence, for the K auxiliary
# decoders at once:
#   - layer 1: ``bmm((K, N, D), (K, D, C))`` with ``N = B * h * w`` (one GEMM per decoder, batched);
#   - each sub-pixel block: ``baddbmm`` to ``(K, n, 4C)`` with the weight's output columns permuted to
#     (sub-position, class) order, ReLU, and a free ``view`` to ``(K, 4n, C)``: the "shuffle" costs nothing;
#   - the loss against the main softmax put once into the same order (:func:`subpixel_order`).
# And because the loss is a scalar, its gradient with respect to every input is ``grad_out`` times a
# tensor that can be computed right away: the forward pass back-propagates each chunk of decoders
# immediately and keeps only the gradients (the size of the inputs), never the K full-resolution outputs
# nor the intermediate maps. The chunk size bounds the temporary memory.


def subpixel_order(x: Tensor, n_blocks: int) -> Tensor:
    """``(B, C, h * 2**n, w * 2**n) -> (B * h * w * 4**n, C)``, rows in the fused decoders' order.

    Row ``((b, y, x), s_1, ..., s_n)`` with ``s_k = (i_k, j_k)`` is the pixel
    ``(y * 2**n + sum_k i_k 2**(n-k), x * 2**n + sum_k j_k 2**(n-k))``: what ``n`` PixelShuffle(2) blocks
    produce from a low-resolution position ``(y, x)``.
    """
    b, c, height, width = x.shape
    r = 1 << n_blocks
    if height % r or width % r:
        raise ValueError(f"spatial size {(height, width)} not divisible by {r}")
    h, w = height // r, width // r
    view = x.reshape(b, c, h, *([2] * n_blocks), w, *([2] * n_blocks))
    order = [0, 2, 3 + n_blocks]
    for k in range(n_blocks):
        order += [3 + k, 4 + n_blocks + k]
    order.append(1)
    return view.permute(order).reshape(-1, c)


def _block_params(block: SubPixelBlock) -> tuple[Tensor, Tensor, bool]:
    """A sub-pixel block's conv as ``(C_in, 4C)`` weight / ``(4C,)`` bias, columns in (sub-position, c) order.

    PixelShuffle(2) sends conv output channel ``c * 4 + s`` to class ``c`` at sub-position ``s``; listing
    the columns as ``s * C + c`` makes a row of 4C values a ``(4, C)`` block, so the shuffle is a view.
    """
    weight = block.conv.weight  # (4C, C_in, 1, 1)
    out_ch, in_ch = weight.shape[:2]
    c = out_ch // 4
    w = weight.reshape(c, 4, in_ch).transpose(0, 1).reshape(out_ch, in_ch).t()
    bias = block.conv.bias
    if bias is None:
        b = weight.new_zeros(out_ch)
    else:
        b = bias.reshape(c, 4).t().reshape(out_ch)
    return w, b, isinstance(block.relu, nn.ReLU)


def _decode_rows(
    h0: Tensor, ws: Sequence[Tensor], bs: Sequence[Tensor], relus: Sequence[bool]
) -> list[Tensor]:
    """The sub-pixel blocks of k decoders as batched GEMMs: ``h0`` (k, N, C) -> every block's input and
    output, ``[h0, (k, n, 4C), ...]``; the last one viewed as (k, N * 4**n, C) is the logits in row order."""
    k, _, n_cls = h0.shape
    acts = [h0]
    for w, b, relu in zip(ws, bs, relus, strict=True):
        a = torch.baddbmm(b.unsqueeze(1), acts[-1].reshape(k, -1, n_cls), w)  # (k, n, 4C)
        if relu:
            a = a.relu_()
        acts.append(a)
    return acts


def _chunk_loss(
    kind: str, logits: Tensor, qt: Tensor, w_pix: Tensor | None, need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """One chunk's summed loss and, with ``need_grad``, its gradient with respect to ``logits`` (k, C, P)
    (mse: up to the factor 2). The value is always the shared per-element definition of ``kind``
    (``cct_losses.CONSISTENCY_POINTWISE``, looked up now); the gradients of mse and kl are their closed
    forms (one or two passes instead of autograd's saved softmax and difference; pinned to autograd's
    gradient of the definition by the tests); any other kind is differentiated by autograd, chunk-sized.
    """
    pointwise = CONSISTENCY_POINTWISE[kind]
    if need_grad and kind not in ("mse", "kl"):
        with torch.enable_grad():
            leaf = logits.detach().requires_grad_(True)
            elem = pointwise(leaf, qt, 1)
            value = (elem if w_pix is None else elem * w_pix).sum()
            (grad,) = torch.autograd.grad(value, leaf)
        return value.detach(), grad
    elem = pointwise(logits, qt, 1)  # (k, C, P)
    value = (elem if w_pix is None else elem * w_pix).sum()
    del elem
    if not need_grad:
        return value, None
    # A left-out pixel contributes neither to the loss nor to any gradient: its p - q is multiplied by 0.
    if kind == "mse":
        p = torch.softmax(logits, dim=1)
        diff = p.sub(qt)
        if w_pix is not None:
            diff.mul_(w_pix)
        # d/dlogits of sum (p - q)^2, up to the factor 2: p * (diff - <p, diff>), in one kernel (the
        # softmax backward) instead of four element-wise ops.
        return value, torch._softmax_backward_data(diff, p, 1, logits.dtype)
    grad = torch.log_softmax(logits, dim=1).exp_().sub_(qt)  # kl: p - q, as sum_c q = 1
    if w_pix is not None:
        grad.mul_(w_pix)
    return value, grad


def _backprop_rows(
    grad: Tensor, acts: Sequence[Tensor], ws: Sequence[Tensor], relus: Sequence[bool]
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Back through :func:`_decode_rows`: ``grad`` (k, P, C) of the logits -> the gradients of ``h0``
    (k, N, C) and of each block's weight (k, C_in, 4C) and bias (k, 4C), unscaled."""
    k, _, n_cls = acts[0].shape
    dws: list[Tensor] = [grad] * len(ws)
    dbs: list[Tensor] = [grad] * len(ws)
    for i in range(len(ws) - 1, -1, -1):
        a = acts[i + 1]
        grad = grad.reshape(a.shape)
        if relus[i]:
            grad = torch.ops.aten.threshold_backward(grad, a, 0)  # ReLU's backward, one pass
        inp = acts[i].reshape(k, -1, n_cls)
        dws[i] = torch.bmm(inp.transpose(1, 2), grad)
        dbs[i] = torch.sum(grad, dim=1)
        grad = torch.bmm(grad, ws[i].transpose(1, 2))
    return grad, dws, dbs


class _FusedAuxLoss(torch.autograd.Function):
    """Sum over K decoders' sub-pixel blocks of the consistency loss, gradients computed in the forward pass.

    Input ``h0``: ``(K, N, C)``, the first 1x1 conv's output of each decoder in row order (that conv stays
    an ordinary autograd convolution: it is the only layer at the width of z, and running it as a conv on
    each ``(B, D, h, w)`` input avoids a ``(K, N, D)`` stacked copy of the perturbed features). ``keep``:
    ``(P,)`` 1 / 0 per output pixel in the same order (the confidence mask), or ``None`` (every pixel);
    ``scale``: the mean's ``1 / count``, a float or a 0-d tensor (a count of kept pixels: no host sync).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        meta: tuple[str, int, tuple[bool, ...], float | Tensor, bool],
        h0: Tensor,
        q: Tensor,
        keep: Tensor | None,
        *blocks: Tensor,
    ) -> Tensor:
        kind, chunk, relus, scale, need_grad = meta
        k_all = h0.shape[0]
        mm = h0.dtype
        ws = [blocks[2 * i].to(mm) for i in range(len(relus))]
        bs = [blocks[2 * i + 1].to(mm) for i in range(len(relus))]
        qf = q.float() if q.dtype in (torch.float16, torch.bfloat16) else q
        cdt = qf.dtype
        # The softmax work runs with the classes on dim -2, (k, C, P): torch's CPU softmax (and its
        # backward) over a last dim of C ~ 10 is 10x slower than over a middle one (measured: 55 vs 4 ms
        # on (7, 49152, 6), one thread). The target is put in that layout once.
        qt = qf.transpose(-1, -2).contiguous()
        w_pix = None if keep is None else keep.to(cdt)  # (P,), broadcast over (k, C, P)
        total = torch.zeros((), dtype=cdt, device=h0.device)
        # UNSCALED gradients (the factor 2 of the MSE and the 1/count of the mean are applied to these
        # small tensors in backward, together with grad_out: two fewer passes over the K outputs).
        grads = [torch.empty_like(t) for t in (h0, *ws, *bs)] if need_grad else []
        for start in range(0, k_all, chunk):
            sl = slice(start, min(start + chunk, k_all))
            acts = _decode_rows(h0[sl], [w[sl] for w in ws], [b[sl] for b in bs], relus)
            # (k, C, P), P in sub-pixel order (the layout of qt)
            logits = acts[-1].reshape(sl.stop - sl.start, -1, h0.shape[2]).to(cdt).transpose(1, 2)
            value, grad = _chunk_loss(kind, logits.contiguous(), qt, w_pix, need_grad)
            total = total + value
            del logits
            if grad is not None:
                dh0, dws, dbs = _backprop_rows(grad.transpose(1, 2).to(mm), acts, [w[sl] for w in ws], relus)
                for buffer, part in zip(grads, (dh0, *dws, *dbs), strict=True):
                    buffer[sl] = part
            del acts, grad
        if need_grad:  # saved in the inputs' order: h0, then (weight, bias) per block
            n = len(ws)
            ctx.save_for_backward(grads[0], *(g for i in range(n) for g in (grads[1 + i], grads[1 + n + i])))
        ctx.grad_factor = scale * (2.0 if kind == "mse" else 1.0)
        ctx.dtypes = [h0.dtype, *(t.dtype for t in blocks)]
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        if not saved:
            raise RuntimeError("fused_consistency_loss: forward ran without gradients")
        factor = grad_out * ctx.grad_factor
        outs = [(g * factor.to(g.dtype)).to(dt) for g, dt in zip(saved, ctx.dtypes, strict=True)]
        return (None, outs[0], None, None, *outs[1:])


def fused_consistency_loss(
    decoders: Sequence[SubPixelDecoder],
    inputs: Sequence[Tensor],
    target_probs: Tensor,
    kind: str = "mse",
    *,
    confidence: float | None = None,
    chunk_elements: int = 1 << 23,
) -> Tensor:
    """``mean_k d(softmax(decoders[k](inputs[k])), target_probs)``, without materialising the K outputs.

    Same value and gradients (up to float rounding) as ``cct_losses.consistency_loss`` on the K decoder
    outputs with the main prediction at the decoders' native resolution, from the same per-element
    definition (``cct_losses.CONSISTENCY_POINTWISE[kind]``): ``"mse"`` is the mean over all B*C*H*W
    elements, ``"kl"`` (``KL(target || aux)``) and ``"js"`` are summed over classes and averaged over pixels.
    mse and kl are differentiated in closed form, other kinds by autograd one chunk at a time. The
    decoders are run as batched matrix products in sub-pixel order (see the comment above) and back-
    propagated chunk by chunk inside the forward pass: the autograd graph keeps only the gradients with
    respect to the inputs and the decoders' weights. Consequently the result supports ONE backward pass
    (no double backward), like any loss of a training step.

    Args:
        decoders: K :class:`SubPixelDecoder` of the same shape (their parameters receive the gradients).
        inputs: K tensors ``(B, D, h, w)`` (e.g. the perturbed features), each fed to its decoder.
        target_probs: ``(B, C, h * up, w * up)`` target probabilities (no gradient flows to it).
        kind: one of ``cct_losses.CONSISTENCY_KINDS`` (``"mse"``, ``"kl"``, ``"js"``).
        confidence: if given, the pixels whose target max-probability is ``< confidence`` are left out and
            the mean is over the kept ones (0.0 if none is kept), as ``consistency_loss(confidence=)``.
        chunk_elements: decoders are processed in chunks of about this many output elements
            (``k * B * C * H * W``), at least one decoder per chunk: it bounds the temporary memory.

    Returns:
        0-d tensor in float32 (float64 for float64 targets).
    """
    if kind not in CONSISTENCY_KINDS:
        raise ValueError(f"kind must be one of {CONSISTENCY_KINDS} (cct_losses), got {kind!r}")
    if len(decoders) == 0 or len(decoders) != len(inputs):
        raise ValueError("need one input per decoder, and at least one decoder")
    first = decoders[0]
    n_blocks = len(first.blocks)
    batch, _, h, w = inputs[0].shape
    n_cls = first.num_classes
    if target_probs.shape != (batch, n_cls, h << n_blocks, w << n_blocks):
        raise ValueError(
            f"target_probs {tuple(target_probs.shape)} must be {(batch, n_cls, h << n_blocks, w << n_blocks)}"
        )
    k_all = len(decoders)
    # First layer: each decoder's own 1x1 conv (D -> C), then (K, B, h, w, C): rows = low-res positions.
    h0 = torch.stack([d.conv1x1(x).permute(0, 2, 3, 1) for d, x in zip(decoders, inputs, strict=True)])
    h0 = h0.reshape(k_all, batch * h * w, n_cls)
    blocks: list[Tensor] = []
    relus: list[bool] = []
    for i in range(n_blocks):
        params = [_block_params(_as_block(d.blocks[i])) for d in decoders]
        blocks += [torch.stack([p[0] for p in params]), torch.stack([p[1] for p in params])]
        relus.append(params[0][2])
    q = subpixel_order(target_probs.detach(), n_blocks)
    pixels = q.shape[0]
    per_pixel = k_all * (n_cls if kind == "mse" else 1)
    keep: Tensor | None = None
    scale: float | Tensor = 1.0 / (pixels * per_pixel)
    if confidence is not None:
        if isinstance(confidence, bool) or not 0.0 <= float(confidence) <= 1.0:
            raise ValueError(f"confidence must be None or a float in [0, 1], got {confidence!r}")
        keep = confidence_mask(q, confidence)  # (P,), in q's row order
        # The count stays on the device (no host sync); no kept pixel: a zero loss and zero gradients.
        count_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        scale = 1.0 / (keep.sum().clamp_min(1).to(count_dtype) * per_pixel)
    chunk = max(1, int(chunk_elements) // max(1, pixels * n_cls))
    need_grad = torch.is_grad_enabled() and (h0.requires_grad or any(t.requires_grad for t in blocks))
    meta = (kind, chunk, tuple(relus), scale, need_grad)
    if h0.device.type in ("cpu", "cuda"):
        # The GEMMs run in h0's dtype (bf16 under autocast stays bf16), the softmax and the loss in float32:
        # autocast must not re-cast inside.
        with torch.autocast(device_type=h0.device.type, enabled=False):
            out: Tensor = _FusedAuxLoss.apply(meta, h0, q, keep, *blocks)
    else:  # pragma: no cover - other backends
        out = _FusedAuxLoss.apply(meta, h0, q, keep, *blocks)
    return out


def is_subpixel_decoder(module: nn.Module) -> bool:
    """Whether ``module`` is an :class:`~cct_train.models.decoders.UpsampleDecoder` as this module reads it
    (a ``conv1x1`` then sub-pixel ``blocks``), so that the fused path applies to it. By its parts, as
    :func:`_as_block`, to import nothing of the models."""
    blocks = getattr(module, "blocks", None)
    return isinstance(getattr(module, "conv1x1", None), nn.Conv2d) and isinstance(
        blocks, (nn.Sequential, nn.ModuleList)
    )


def _as_block(module: nn.Module) -> SubPixelBlock:
    """The sub-pixel block (a 1x1 ``conv`` to 4C, then ``relu`` or not), typed: checked by its parts, so
    that this module needs nothing of cct_train's models at run time."""
    if not isinstance(getattr(module, "conv", None), nn.Conv2d) or not hasattr(module, "relu"):
        raise TypeError(f"expected a SubPixelBlock, got {type(module).__name__}")
    return cast("SubPixelBlock", module)


class SubPixelRows:
    """A decoder seen as ``z -> (1, C, P, 1)`` logits in sub-pixel order (see :func:`subpixel_order`).

    For I-VAT: its power iteration back-propagates ``sum_pixels KL(target || softmax(decoder(z + xi d)))``
    to ``d``, a sum over pixels, so it may run on the decoder's logits in any pixel order as long as the
    target (:meth:`target`) is in the same order. This form is GEMMs with no PixelShuffle (whose CPU kernel
    and its backward are slow); the ``(1, C, P, 1)`` shape keeps the class dimension at 1, where VAT's
    softmax expects it. Uses the decoder's own parameters (nothing copied, no state).
    """

    def __init__(self, decoder: SubPixelDecoder) -> None:
        self.decoder = decoder
        self.n_blocks = len(decoder.blocks)

    def __call__(self, z: Tensor) -> Tensor:
        """``(B, D, h, w) -> (1, C, B * h * w * upscale**2, 1)``."""
        dec = self.decoder
        n_cls = dec.num_classes
        rows = dec.conv1x1(z).permute(0, 2, 3, 1).reshape(-1, n_cls)
        for block in dec.blocks:
            weight, bias, relu = _block_params(_as_block(block))
            out = torch.addmm(bias.to(rows.dtype), rows, weight.to(rows.dtype))
            rows = (out.relu() if relu else out).reshape(-1, n_cls)
        return rows.t().reshape(1, n_cls, -1, 1)

    def target(self, logits: Tensor) -> Tensor:
        """A ``(B, C, h * upscale, w * upscale)`` map in the same order and shape as :meth:`__call__`."""
        rows = subpixel_order(logits, self.n_blocks)
        return rows.t().reshape(1, rows.shape[1], -1, 1)
