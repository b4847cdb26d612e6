"""Unsupervised consistency loss of CCT: auxiliary decoders against the (detached) main prediction.

``Lu = 1/K sum_k d(softmax(main), softmax(aux_k))``. The main prediction is a *target*: it is detached
here, so ``Lu`` never trains the main decoder (only the encoder and the auxiliary decoders).

Distances (``kind``):

- ``"mse"`` (CCT's default): ``(softmax(aux) - softmax(main))^2`` averaged over ALL elements
  (B * C * H * W), as ``F.mse_loss`` on the two softmaxes in the original code.
- ``"kl"``: ``KL(main || aux) = sum_c q_c (log q_c - log p_c)`` per pixel, averaged over pixels.
- ``"js"``: Jensen-Shannon divergence ``0.5 KL(q || m) + 0.5 KL(p || m)``, ``m = (p + q) / 2``, per pixel
  (in ``[0, log 2]``), averaged over pixels.

Each kind's formula is written once, per element, in :func:`pointwise_mse`, :func:`pointwise_kl` and
:func:`pointwise_js` (the registry :data:`CONSISTENCY_POINTWISE`); :func:`consistency_loss`,
:func:`softmax_mse_loss` and other packages' fused implementations (cct-train's) read it from the registry.

Memory. With K = 30 auxiliary decoders at full resolution the consistency loss is CCT's memory peak: the
plain autograd graph of ``mse(softmax(a), q)`` keeps, per decoder, the softmax output AND the difference
``p - q`` (2 x B*C*H*W float32). :func:`softmax_mse_loss` (used by default for ``kind="mse"``) is a custom
autograd function that keeps only the auxiliary logits (in their own dtype) and recomputes the softmax in
the backward pass: half the saved bytes in float32, a quarter for bfloat16 logits, for one extra softmax
per decoder in the backward. See the package README for the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import as_tensor_list, compute_dtype, no_autocast, safe_divide

__all__ = [
    "CONSISTENCY_KINDS",
    "CONSISTENCY_POINTWISE",
    "ConsistencyLoss",
    "confidence_mask",
    "consistency_loss",
    "pointwise_js",
    "pointwise_kl",
    "pointwise_mse",
    "resize_probs",
    "softmax_mse_loss",
]

_REDUCTIONS = ("mean", "sum", "none")
_TINY = 1e-12


# ------------------------------------------------------------------------ the per-element definitions
#
# Each kind's formula is written once, here, on one element (pixel, class) of the auxiliary logits and the
# target probabilities; every path that computes a consistency loss reads it from CONSISTENCY_POINTWISE
# (consistency_loss, softmax_mse_loss's value, and cct-train's fused decoders), so that an edit here
# reaches all of them. The reductions: mse is averaged over all elements (classes included), kl and js are
# summed over the classes and averaged over the pixels.


def pointwise_mse(aux_logits: Tensor, target_probs: Tensor, dim: int = 1) -> Tensor:
    """``(softmax(aux) - q)^2`` per element: ``aux_logits`` (B, C, *) and ``target_probs`` q (broadcastable)
    -> (B, C, *), ``dim`` the class dimension. The MSE consistency is its mean over all elements.

    >>> float(pointwise_mse(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).sum())  # 0.5^2 + 0.5^2
    0.5
    """
    return (torch.softmax(aux_logits, dim=dim) - target_probs) ** 2


def pointwise_kl(aux_logits: Tensor, target_probs: Tensor, dim: int = 1) -> Tensor:
    """``q_c (log q_c - log p_c)`` per element, ``p = softmax(aux)``: (B, C, *) -> (B, C, *). Summed over
    the classes (``dim``) it is ``KL(q || p)`` per pixel; ``q log q`` is 0 where ``q = 0``.

    >>> float(pointwise_kl(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]])).sum())  # p = q
    0.0
    """
    logp = F.log_softmax(aux_logits, dim=dim)
    return torch.xlogy(target_probs, target_probs) - target_probs * logp


def pointwise_js(aux_logits: Tensor, target_probs: Tensor, dim: int = 1) -> Tensor:
    """``0.5 (p_c (log p_c - log m_c) + q_c (log q_c - log m_c))`` per element, ``p = softmax(aux)``,
    ``m = (p + q) / 2``: (B, C, *) -> (B, C, *). Summed over the classes (``dim``) it is the Jensen-Shannon
    divergence per pixel, in ``[0, log 2]``.

    >>> round(float(pointwise_js(torch.tensor([[20.0, -20.0]]), torch.tensor([[0.0, 1.0]])).sum()), 4)  # log 2
    0.6931
    """
    logp = F.log_softmax(aux_logits, dim=dim)
    p = logp.exp()
    m = 0.5 * (p + target_probs)
    log_m = torch.log(m.clamp_min(_TINY))
    return 0.5 * (p * (logp - log_m) + torch.xlogy(target_probs, target_probs) - target_probs * log_m)


#: kind -> its per-element definition ``(aux_logits, target_probs, dim) -> (B, C, *)``: the one place a
#: consistency kind is defined (looked up at call time by every path that computes the loss).
CONSISTENCY_POINTWISE: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "mse": pointwise_mse,
    "kl": pointwise_kl,
    "js": pointwise_js,
}

#: The distances understood by :func:`consistency_loss`.
CONSISTENCY_KINDS = tuple(CONSISTENCY_POINTWISE)


def confidence_mask(target_probs: Tensor, confidence: float, dim: int = 1) -> Tensor:
    """The pixels a confidence-masked consistency loss keeps: the target's max-probability over the classes
    (``dim``) is ``>= confidence``. ``target_probs`` (B, C, *) -> bool (B, *).

    >>> confidence_mask(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), 0.6)
    tensor([ True, False])
    """
    return target_probs.amax(dim=dim) >= float(confidence)


def _interp_mode(spatial_dims: int, linear: bool) -> str:
    if not linear:
        return "area"
    return {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]


def resize_probs(probs: Tensor, size: Sequence[int]) -> Tensor:
    """Resize class probabilities (B, C, *spatial) to ``size`` keeping them a distribution per pixel.

    Downsampling (every target dim <= the source dim) averages with ``mode="area"`` (adaptive average
    pooling: each output pixel is the mean distribution of the input pixels it covers); upsampling uses
    (bi/tri)linear interpolation with ``align_corners=False``. Both are convex combinations of input
    pixels, so the result still sums to 1 over classes.

    Args:
        probs: (B, C, H, W) probabilities (1 to 3 spatial dims).
        size: target spatial size, e.g. (h, w).

    Returns:
        (B, C, *size) probabilities.
    """
    size = tuple(int(s) for s in size)
    src = tuple(probs.shape[2:])
    if size == src:
        return probs
    if len(size) != len(src) or not 1 <= len(src) <= 3:
        raise ValueError(f"cannot resize spatial size {src} to {size}")
    down = all(s <= r for s, r in zip(size, src, strict=True))
    mode = _interp_mode(len(src), linear=not down)
    if mode == "area":
        return F.interpolate(probs, size=size, mode="area")
    return F.interpolate(probs, size=size, mode=mode, align_corners=False)


def _resize_logits(logits: Tensor, size: Sequence[int]) -> Tensor:
    size = tuple(int(s) for s in size)
    if tuple(logits.shape[2:]) == size:
        return logits
    mode = _interp_mode(logits.dim() - 2, linear=True)
    return F.interpolate(logits, size=size, mode=mode, align_corners=False)


class _SoftmaxMSE(torch.autograd.Function):
    """``sum(mask * (softmax(logits) - target)^2) * scale`` saving only the logits (softmax recomputed)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, target: Tensor, mask: Tensor | None, mean: bool
    ) -> Tensor:
        dtype = compute_dtype(logits)
        # The value from the shared definition; the gradient below is its closed form (test-pinned).
        elem = CONSISTENCY_POINTWISE["mse"](logits.to(dtype), target.to(dtype), 1)
        if mask is not None:
            elem = torch.where(mask.unsqueeze(1), elem, torch.zeros_like(elem))
            count = mask.sum().to(dtype) * logits.shape[1]
        else:
            count = torch.tensor(float(elem.numel()), dtype=dtype, device=logits.device)
        total = elem.sum()
        if mean:
            scale = 1.0 / torch.where(count > 0, count, torch.ones_like(count))
        else:
            scale = torch.ones((), dtype=dtype, device=logits.device)
        ctx.save_for_backward(logits, target, scale, *(() if mask is None else (mask,)))
        ctx.has_mask = mask is not None
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        saved = ctx.saved_tensors
        logits, target, scale = saved[0], saved[1], saved[2]
        mask = saved[3] if ctx.has_mask else None
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        dtype = compute_dtype(logits)
        p = torch.softmax(logits.to(dtype), dim=1)
        diff = p - target.to(dtype)
        if mask is not None:
            diff = torch.where(mask.unsqueeze(1), diff, torch.zeros_like(diff))
        g = diff * (2.0 * scale * grad_out.to(dtype))  # dL/dp
        # Softmax Jacobian-vector product: dL/da = p * (g - <p, g>).
        grad = p * (g - (p * g).sum(dim=1, keepdim=True))
        return grad.to(logits.dtype), None, None, None


def softmax_mse_loss(
    aux_logits: Tensor,
    target_probs: Tensor,
    mask: Tensor | None = None,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """Memory-lean ``mse(softmax(aux_logits), target_probs)`` (a custom autograd function).

    The value and the gradient equal autograd's on ``((softmax(a) - q) ** 2).mean()``, but the graph keeps
    only ``aux_logits`` (and ``target_probs``, usually one tensor shared by all decoders) instead of the
    softmax output plus the difference: the softmax is recomputed in the backward pass. No gradient flows
    to ``target_probs``. Computed in float32 (float64 stays float64) with autocast disabled.

    Args:
        aux_logits: (B, C, H, W) logits of an auxiliary decoder.
        target_probs: (B, C, H, W) target probabilities (e.g. the detached main softmax).
        mask: optional (B, H, W) bool; pixels where it is False are left out.
        reduction: ``"mean"``: mean over the elements of the kept pixels (``B*C*H*W`` without a mask; 0.0
            if none kept), ``"sum"``: sum of the squared errors.

    Returns:
        0-d tensor (float32, or float64 for float64 logits).

    >>> logits = torch.zeros(1, 2, 1, 1, requires_grad=True)  # softmax (0.5, 0.5)
    >>> float(softmax_mse_loss(logits, torch.tensor([[[[1.0]], [[0.0]]]])))  # ((0.5 - 1)^2 + 0.5^2) / 2
    0.25
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if aux_logits.dim() < 2 or target_probs.shape != aux_logits.shape:
        raise ValueError(
            f"aux_logits {tuple(aux_logits.shape)} and target_probs {tuple(target_probs.shape)} must both "
            "be (B, C, *spatial) of the same shape"
        )
    if mask is not None:
        if mask.dtype != torch.bool or mask.shape != aux_logits.shape[:1] + aux_logits.shape[2:]:
            raise ValueError("mask must be a bool tensor of shape (B, *spatial)")
        mask = mask.detach()
    with no_autocast(aux_logits.device.type):
        out: Tensor = _SoftmaxMSE.apply(aux_logits, target_probs.detach(), mask, reduction == "mean")
    return out


def _validate(kind: str, reduction: str, confidence: float | None, resize_to: str) -> None:
    if kind not in CONSISTENCY_KINDS:
        raise ValueError(f"kind must be one of {CONSISTENCY_KINDS}, got {kind!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if confidence is not None and (isinstance(confidence, bool) or not 0.0 <= float(confidence) <= 1.0):
        raise ValueError(f"confidence must be None or a float in [0, 1], got {confidence!r}")
    if resize_to not in ("aux", "main"):
        raise ValueError(f"resize_to must be 'aux' or 'main', got {resize_to!r}")


def _one_decoder(
    aux: Tensor,
    q: Tensor,
    kind: str,
    mask: Tensor | None,
    reduction: str,
    memory_efficient: bool,
    dtype: torch.dtype,
) -> Tensor:
    """Loss of one auxiliary decoder; ``q`` is the target distribution at ``aux``'s size."""
    if kind == "mse" and memory_efficient and reduction != "none":
        return softmax_mse_loss(aux, q, mask=mask, reduction=reduction)  # type: ignore[arg-type]
    elem = CONSISTENCY_POINTWISE[kind](aux.to(dtype), q, 1)  # (B, C, *)
    if kind == "mse":
        # Plain autograd graph (the reference the memory-lean path is measured against).
        if reduction == "none":
            pix = elem.mean(dim=1)
        else:
            if mask is not None:
                elem = torch.where(mask.unsqueeze(1), elem, torch.zeros_like(elem))
                count = mask.sum().to(dtype) * aux.shape[1]
            else:
                count = torch.tensor(float(elem.numel()), dtype=dtype, device=aux.device)
            total = elem.sum()
            return safe_divide(total, count) if reduction == "mean" else total
    else:  # kl, js: summed over the classes, per pixel
        pix = elem.sum(dim=1)
    if mask is not None:
        pix = torch.where(mask, pix, torch.zeros_like(pix))
    if reduction == "none":
        return pix
    total = pix.sum()
    if reduction == "sum":
        return total
    count = mask.sum().to(dtype) if mask is not None else torch.tensor(float(pix.numel()), dtype=dtype)
    return safe_divide(total, count.to(aux.device))


def consistency_loss(
    aux_logits: Tensor | Sequence[Tensor],
    main_logits: Tensor,
    kind: str = "mse",
    *,
    confidence: float | None = None,
    reduction: str = "mean",
    resize_to: str = "aux",
    memory_efficient: bool = True,
) -> Tensor:
    """Consistency between auxiliary predictions and the DETACHED main prediction, averaged over decoders.

    Args:
        aux_logits: (B, C, H, W) logits of one auxiliary decoder, or a list / tuple of them (one per
            decoder; they may have different spatial sizes with ``resize_to="aux"``). Processed one decoder
            at a time (nothing K-sized is ever stacked).
        main_logits: (B, C, H', W') logits of the main decoder; detached here, so no gradient reaches it.
        kind: ``"mse"`` (mean over all B*C*H*W elements), ``"kl"`` (KL(main || aux), summed over classes,
            averaged over pixels) or ``"js"`` (Jensen-Shannon, same reduction).
        confidence: if given, pixels whose main max-probability is ``< confidence`` are left out; the mean
            is then over the kept pixels (0.0, still differentiable, if none is kept).
        reduction: ``"mean"`` (default), ``"sum"`` (summed over elements / pixels, then averaged over
            decoders) or ``"none"`` (per-pixel map (B, H, W), averaged over decoders: the class-mean of the
            squared error for mse, the divergence for kl / js; left-out pixels are 0).
        resize_to: when the spatial sizes differ, ``"aux"`` (default) resizes the main PROBABILITIES to
            each decoder's size (area-averaging when shrinking, bilinear when growing; computed once per
            distinct size), so the loss is computed at the decoders' native resolution with no upsampled
            copy of the auxiliary logits in the graph; ``"main"`` upsamples the auxiliary LOGITS
            bilinearly to the main size (what the original CCT decoders do) and computes there.
        memory_efficient: for ``kind="mse"`` use :func:`softmax_mse_loss`, whose graph keeps only the
            logits (softmax recomputed in backward) instead of the softmax and the difference. Same value
            and gradient.

    Returns:
        0-d float32 tensor (float64 for float64 inputs), or (B, H, W) with ``reduction="none"``. Computed
        in float32 with autocast disabled, so it is safe under ``torch.autocast`` (bf16 / fp16).

    Raises:
        ValueError: unknown ``kind`` / ``reduction`` / ``resize_to``, ``confidence`` outside [0, 1],
            mismatching batch / class dims, or ``reduction="none"`` with decoders of different sizes.

    >>> main = torch.zeros(2, 3, 4, 4)
    >>> float(consistency_loss([torch.zeros(2, 3, 4, 4)], main))  # agreeing decoders: 0
    0.0
    >>> aux = torch.randn(2, 3, 4, 4, requires_grad=True)
    >>> consistency_loss([aux, aux * 2], main, kind="js").backward()  # main detached inside
    >>> aux.grad.shape
    torch.Size([2, 3, 4, 4])
    """
    _validate(kind, reduction, confidence, resize_to)
    auxes = as_tensor_list(aux_logits, "aux_logits")
    if not isinstance(main_logits, Tensor) or main_logits.dim() < 2:
        raise ValueError("main_logits must be a (B, C, *spatial) tensor")
    main = main_logits.detach()
    for i, a in enumerate(auxes):
        if a.dim() != main.dim() or a.shape[:2] != main.shape[:2]:
            raise ValueError(
                f"aux_logits[{i}] has shape {tuple(a.shape)}, incompatible with main_logits "
                f"{tuple(main.shape)} (same B and C and number of dims expected)"
            )
    dtype = compute_dtype(main)
    for a in auxes:
        dtype = torch.promote_types(dtype, compute_dtype(a))

    with no_autocast(main.device.type):
        q_main = torch.softmax(main.to(dtype), dim=1)
        targets: dict[tuple[int, ...], tuple[Tensor, Tensor | None]] = {}

        def target_at(size: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
            if size not in targets:
                q = resize_probs(q_main, size)
                mask = None if confidence is None else confidence_mask(q, confidence)
                targets[size] = (q, mask)
            return targets[size]

        losses: list[Tensor] = []
        for a in auxes:
            if resize_to == "main":
                a = _resize_logits(a, main.shape[2:])
            q, mask = target_at(tuple(a.shape[2:]))
            losses.append(_one_decoder(a, q, kind, mask, reduction, memory_efficient, dtype))

        if len(losses) == 1:
            return losses[0]
        if reduction == "none" and len({tuple(x.shape) for x in losses}) > 1:
            raise ValueError("reduction='none' needs every auxiliary decoder at the same spatial size")
        total = losses[0]
        for x in losses[1:]:
            total = total + x
        return total / len(losses)


class ConsistencyLoss(nn.Module):
    """Module form of :func:`consistency_loss` (same arguments, fixed at construction).

    ``forward(aux_logits, main_logits)``: aux_logits (B, C, H, W) or a list of them, main_logits
    (B, C, H', W') (detached inside); returns the loss.
    """

    def __init__(
        self,
        kind: str = "mse",
        confidence: float | None = None,
        reduction: str = "mean",
        resize_to: str = "aux",
        memory_efficient: bool = True,
    ) -> None:
        super().__init__()
        _validate(kind, reduction, confidence, resize_to)
        self.kind = kind
        self.confidence = confidence
        self.reduction = reduction
        self.resize_to = resize_to
        self.memory_efficient = memory_efficient

    def forward(self, aux_logits: Tensor | Sequence[Tensor], main_logits: Tensor) -> Tensor:
        return consistency_loss(
            aux_logits,
            main_logits,
            self.kind,
            confidence=self.confidence,
            reduction=self.reduction,
            resize_to=self.resize_to,
            memory_efficient=self.memory_efficient,
        )

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, confidence={self.confidence}, reduction={self.reduction!r}, "
            f"resize_to={self.resize_to!r}, memory_efficient={self.memory_efficient}"
        )
