"""The small modules of CCT: the PSP head of the encoder and the sub-pixel decoders (main and auxiliary).

- :class:`PSPModule`: pyramid pooling (Zhao et al. 2017) on the backbone's deepest map,
  ``(B, D_in, h, w) -> (B, out_channels, h, w)``.
- :func:`icnr_`: ICNR initialisation of a sub-pixel convolution (Aitken et al. 2017).
- :class:`SubPixelBlock`: 1x1 conv ``C -> 4C``, ReLU, ``PixelShuffle(2)``: ``(B, C, h, w) -> (B, C, 2h, 2w)``.
- :class:`UpsampleDecoder`: 1x1 conv ``D -> C`` then ``log2(upscale)`` sub-pixel blocks,
  ``(B, D, h, w) -> (B, C, h * upscale, w * upscale)``.
- :func:`fused_consistency_loss`: the consistency loss of K such decoders on K perturbed inputs, computed
  as batched matrix products in "sub-pixel order" (no PixelShuffle, no full-resolution output kept for
  the backward pass). See its docstring for why this is exact.
- :func:`subpixel_order`: a ``(B, C, H, W)`` map reordered into that sub-pixel order.
- :class:`SubPixelRows`: one decoder as a callable giving its logits in that order (for I-VAT's power
  iteration, whose loss is also a sum over pixels).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PSPModule",
    "SubPixelBlock",
    "UpsampleDecoder",
    "SubPixelRows",
    "fused_consistency_loss",
    "icnr_",
    "subpixel_order",
]


class PSPModule(nn.Module):
    """Pyramid pooling module: CCT's encoder head (bins 1, 2, 3, 6; 512 output channels in the original).

    For each bin ``b``: adaptive average pooling to ``b x b``, 1x1 conv to ``in_channels // len(bins)``
    channels, BatchNorm, ReLU, bilinear upsampling back to ``h x w``; the pyramids are concatenated with the
    input and fused by a 3x3 conv + BatchNorm + ReLU to ``out_channels``.

    Shapes: ``(B, in_channels, h, w) -> (B, out_channels, h, w)``. In training mode BatchNorm on the
    ``1 x 1`` bin needs a batch of at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int = 512, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not bins:
            raise ValueError("bins must not be empty")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.bins = tuple(int(b) for b in bins)
        branch = max(1, in_channels // len(self.bins))
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, branch, kernel_size=1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(
                in_channels + branch * len(self.bins), out_channels, kernel_size=3, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, h, w) -> (B, out_channels, h, w)``."""
        size = x.shape[-2:]
        pyramids = [x]
        pyramids.extend(
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages
        )
        out: Tensor = self.bottleneck(torch.cat(pyramids, dim=1))
        return out


@torch.no_grad()
def icnr_(
    weight: Tensor,
    upscale: int = 2,
    init: Callable[[Tensor], object] = nn.init.kaiming_normal_,
) -> Tensor:
    """ICNR initialisation, in place, of a conv weight ``(out, in, kh, kw)`` that feeds ``PixelShuffle(upscale)``.

    A sub-kernel of ``out // upscale**2`` filters is drawn with ``init`` and each filter is repeated
    ``upscale**2`` times consecutively (``PixelShuffle`` maps channels ``c * r**2 ... c * r**2 + r**2 - 1``
    to the ``r x r`` block of output channel ``c``), so at initialisation conv + shuffle equals the sub-kernel
    conv followed by nearest-neighbour upsampling: no checkerboard artefacts (Aitken et al. 2017).

    Returns:
        ``weight`` (modified in place).
    """
    factor = upscale**2
    out_ch = weight.shape[0]
    if out_ch % factor:
        raise ValueError(f"ICNR needs out channels ({out_ch}) divisible by upscale**2 ({factor})")
    sub = torch.empty((out_ch // factor, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    init(sub)
    weight.copy_(sub.repeat_interleave(factor, dim=0))
    return weight


class SubPixelBlock(nn.Module):
    """Sub-pixel upsampling x2: 1x1 conv ``C -> 4C``, ReLU, ``PixelShuffle(2)`` (ICNR-initialised).

    As in the paper ("1x1 conv C -> 4C, ReLU, shuffle") and the original code. ReLU and the shuffle
    commute (the shuffle only moves elements), so the order is immaterial. The bias gets PyTorch's default
    range ``U(-1/sqrt(C), 1/sqrt(C))`` drawn for the sub-kernel and repeated like the weight, which keeps
    the ICNR property exactly (each 2x2 output block constant at initialisation).

    Shapes: ``(B, C, h, w) -> (B, C, 2h, 2w)``.
    """

    def __init__(self, channels: int, *, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, kernel_size=1)
        icnr_(self.conv.weight, upscale=2)
        if self.conv.bias is not None:
            bound = 1.0 / math.sqrt(channels)
            with torch.no_grad():
                sub_bias = torch.empty(channels).uniform_(-bound, bound)
                self.conv.bias.copy_(sub_bias.repeat_interleave(4))
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, h, w) -> (B, C, 2h, 2w)``."""
        out: Tensor = self.shuffle(self.relu(self.conv(x)))
        return out


class UpsampleDecoder(nn.Module):
    """CCT's decoder (main and auxiliary): 1x1 conv ``D -> C``, then ``log2(upscale)`` sub-pixel blocks.

    Deviation from the paper, on purpose: the last block has no ReLU by default (see ``final_relu``).

    Three blocks for an encoder of output stride 8 (the paper), four for 16, five for 32. The output is at
    ``h * upscale``; the caller resizes it to the input size when they differ (input not divisible by the
    stride). ``upscale`` must be a power of two (1 gives no block).

    Args:
        in_channels: ``D``, channels of ``z``.
        num_classes: ``C``.
        upscale: total upsampling factor (the encoder's output stride).
        hidden_relu: the ReLU of every block but the last, as the paper. ``False`` makes the decoder linear
            (1x1 conv and linear sub-pixel upsampling): at width C the hidden ReLUs can die all but
            one channel group within the first steps of a high learning rate (measured on CamVid with a
            pretrained EfficientNet-Lite0 at lr 0.05: 40 of 44 channels of the first block dead at every pixel
            by step 10, and the model then predicts only 3 of 11 classes; docs/results.md).
        final_relu: keep the ReLU of the LAST block too, as the paper and the original code do. Default
            ``False``: the last block is conv + shuffle, so the logits are unconstrained. With the final
            ReLU the logits are >= 0 and a class channel whose pre-activation is negative at every pixel
            gets no gradient at all: measured on fresh decoders over PSP-like features, about 40% of them
            (C = 11 or 21; more for C = 2 or 3) start with at least one class dead over the whole batch,
            against 0-5% without it. The earlier blocks keep their ReLU.

    Shapes: ``(B, D, h, w) -> (B, C, h * upscale, w * upscale)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        upscale: int = 8,
        *,
        final_relu: bool = False,
        hidden_relu: bool = True,
    ) -> None:
        super().__init__()
        if upscale < 1 or upscale & (upscale - 1):
            raise ValueError(f"upscale must be a power of two, got {upscale}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.upscale = int(upscale)
        n_blocks = int(math.log2(upscale))
        self.conv1x1 = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.conv1x1.weight, nonlinearity="relu")
        self.blocks = nn.Sequential(
            *(
                SubPixelBlock(num_classes, relu=final_relu if i == n_blocks - 1 else hidden_relu)
                for i in range(n_blocks)
            )
        )

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, h, w) -> (B, C, h * upscale, w * upscale)`` logits."""
        out: Tensor = self.blocks(self.conv1x1(z))
        return out


# ------------------------------------------------------------------------------ fused auxiliary decoders
#
# Why this exists (docs/performance.md has the profile). Every layer of an UpsampleDecoder is a 1x1
# convolution, so the decoder maps each low-resolution position of z, on its own, to an
# ``upscale x upscale`` block of C logits: it is a per-pixel MLP whose output rows are then scattered by
# PixelShuffle. The consistency losses (MSE of softmaxes, KL) are sums over pixels, so the ORDER of the
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


class _FusedAuxLoss(torch.autograd.Function):
    """Sum over K decoders' sub-pixel blocks of the consistency loss, gradients computed in the forward pass.

    Input ``h0``: ``(K, N, C)``, the first 1x1 conv's output of each decoder in row order (that conv stays
    an ordinary autograd convolution: it is the only layer at the width of z, and running it as a conv on
    each ``(B, D, h, w)`` input avoids a ``(K, N, D)`` stacked copy of the perturbed features).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        meta: tuple[str, int, tuple[bool, ...], float, bool],
        h0: Tensor,
        q: Tensor,
        *blocks: Tensor,
    ) -> Tensor:
        kind, chunk, relus, scale, need_grad = meta
        k_all, _, n_cls = h0.shape
        mm = h0.dtype
        ws = [blocks[2 * i].to(mm) for i in range(len(relus))]
        bs = [blocks[2 * i + 1].to(mm) for i in range(len(relus))]
        qf = q.float() if q.dtype in (torch.float16, torch.bfloat16) else q
        cdt = qf.dtype
        total = torch.zeros((), dtype=cdt, device=h0.device)
        if kind == "kl":  # the target's entropy term, once for all K decoders
            total = total + k_all * torch.xlogy(qf, qf).sum()
        if need_grad:
            # UNSCALED gradients (the factor 2 of the MSE and the 1/count of the mean are applied to these
            # small tensors in backward, together with grad_out: two fewer passes over the K outputs).
            dh0 = torch.empty_like(h0)
            dws = [torch.empty_like(w) for w in ws]
            dbs = [torch.empty_like(b) for b in bs]
        for start in range(0, k_all, chunk):
            sl = slice(start, min(start + chunk, k_all))
            k = sl.stop - sl.start
            acts = [h0[sl]]  # (k, N, C)
            for w, b, relu in zip(ws, bs, relus, strict=True):
                a = torch.baddbmm(b[sl].unsqueeze(1), acts[-1].reshape(k, -1, n_cls), w[sl])  # (k, n, 4C)
                if relu:
                    a = a.relu_()
                acts.append(a)
            logits = acts[-1].reshape(k, -1, n_cls).to(cdt)  # (k, P, C), P in sub-pixel order
            if kind == "mse":
                # Four passes over the chunk's outputs: softmax, difference, norm, softmax JVP.
                p = torch.softmax(logits, dim=-1)
                diff = p.sub(qf)
                total = total + torch.linalg.vector_norm(diff).square()
                if need_grad:
                    # d/dlogits of sum (p - q)^2, up to the factor 2: p * (diff - <p, diff>), in one
                    # kernel (the softmax backward) instead of four element-wise ops.
                    g = torch._softmax_backward_data(diff, p, -1, cdt)
                del p, diff
            else:  # kl: sum q (log q - log p); the q log q term is added above
                logp = torch.log_softmax(logits, dim=-1)
                total = total - torch.linalg.vecdot(qf.expand_as(logp).reshape(-1), logp.reshape(-1))
                if need_grad:
                    g = logp.exp_().sub_(qf)  # p - q, as sum_c q = 1
            del logits
            if not need_grad:
                continue
            g = g.to(mm)
            for i in range(len(ws) - 1, -1, -1):
                a = acts[i + 1]
                g = g.reshape(a.shape)
                if relus[i]:
                    g = torch.ops.aten.threshold_backward(g, a, 0)  # ReLU's backward, one pass
                inp = acts[i].reshape(k, -1, n_cls)
                torch.bmm(inp.transpose(1, 2), g, out=dws[i][sl])
                torch.sum(g, dim=1, out=dbs[i][sl])
                g = torch.bmm(g, ws[i][sl].transpose(1, 2))
            dh0[sl] = g
            del acts, g
        if need_grad:
            grads = [dh0]
            for dw, db in zip(dws, dbs, strict=True):
                grads += [dw, db]
            ctx.save_for_backward(*grads)
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
        return (None, outs[0], None, *outs[1:])


def fused_consistency_loss(
    decoders: Sequence[UpsampleDecoder],
    inputs: Sequence[Tensor],
    target_probs: Tensor,
    kind: str = "mse",
    *,
    chunk_elements: int = 1 << 23,
) -> Tensor:
    """``mean_k d(softmax(decoders[k](inputs[k])), target_probs)``, without materialising the K outputs.

    Same value and gradients (up to float rounding) as ``cct_losses.consistency_loss`` on the K decoder
    outputs with the main prediction at the decoders' native resolution: ``"mse"`` is the mean over all
    B*C*H*W elements, ``"kl"`` is ``KL(target || aux)`` summed over classes and averaged over pixels. The
    decoders are run as batched matrix products in sub-pixel order (see the comment above) and back-
    propagated chunk by chunk inside the forward pass: the autograd graph keeps only the gradients with
    respect to the inputs and the decoders' weights. Consequently the result supports ONE backward pass
    (no double backward), like any loss of a training step.

    Args:
        decoders: K :class:`UpsampleDecoder` of the same shape (their parameters receive the gradients).
        inputs: K tensors ``(B, D, h, w)`` (e.g. the perturbed features), each fed to its decoder.
        target_probs: ``(B, C, h * up, w * up)`` target probabilities (no gradient flows to it).
        kind: ``"mse"`` or ``"kl"``.
        chunk_elements: decoders are processed in chunks of about this many output elements
            (``k * B * C * H * W``), at least one decoder per chunk: it bounds the temporary memory.

    Returns:
        0-d tensor in float32 (float64 for float64 targets).
    """
    if kind not in ("mse", "kl"):
        raise ValueError(f"fused_consistency_loss supports 'mse' and 'kl', got {kind!r}")
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
    scale = 1.0 / (k_all * pixels * (n_cls if kind == "mse" else 1))
    chunk = max(1, int(chunk_elements) // max(1, pixels * n_cls))
    need_grad = torch.is_grad_enabled() and (h0.requires_grad or any(t.requires_grad for t in blocks))
    meta = (kind, chunk, tuple(relus), scale, need_grad)
    if h0.device.type in ("cpu", "cuda"):
        # The GEMMs run in h0's dtype (bf16 under autocast stays bf16), the softmax and the loss in float32:
        # autocast must not re-cast inside.
        with torch.autocast(device_type=h0.device.type, enabled=False):
            out: Tensor = _FusedAuxLoss.apply(meta, h0, q, *blocks)
    else:  # pragma: no cover - other backends
        out = _FusedAuxLoss.apply(meta, h0, q, *blocks)
    return out


def _as_block(module: nn.Module) -> SubPixelBlock:
    """The sub-pixel block, typed (``nn.Sequential`` indexing returns ``nn.Module``)."""
    if not isinstance(module, SubPixelBlock):
        raise TypeError(f"expected a SubPixelBlock, got {type(module).__name__}")
    return module


class SubPixelRows:
    """A decoder seen as ``z -> (1, C, P, 1)`` logits in sub-pixel order (see :func:`subpixel_order`).

    For I-VAT: its power iteration back-propagates ``sum_pixels KL(target || softmax(decoder(z + xi d)))``
    to ``d``, a sum over pixels, so it may run on the decoder's logits in any pixel order as long as the
    target (:meth:`target`) is in the same order. This form is GEMMs with no PixelShuffle (whose CPU kernel
    and its backward are slow); the ``(1, C, P, 1)`` shape keeps the class dimension at 1, where VAT's
    softmax expects it. Uses the decoder's own parameters (nothing copied, no state).
    """

    def __init__(self, decoder: UpsampleDecoder) -> None:
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
