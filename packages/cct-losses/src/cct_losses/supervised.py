"""Supervised loss of CCT: annealed bootstrapped cross-entropy (ab-CE).

ab-CE (Ouali et al. 2020, sec. 3.2 / 4.2) only trains on the *hard* labeled pixels: those whose softmax
probability of the true class is below a threshold ``eta``. ``eta`` anneals from ``1 / C`` (every pixel not
yet better than chance is hard) to 0.9 during training, which keeps the supervised loss from over-fitting
the few labeled images. At least ``min_kept`` pixels per image always count (the hardest ones).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import check_int, compute_dtype, no_autocast, safe_divide
from .rampups import _resolve_schedule

__all__ = ["AnnealedBootstrappedCE", "ab_ce_loss"]


def _check_logits_target(logits: Tensor, target: Tensor) -> None:
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError("logits and target must be torch.Tensor")
    if logits.dim() < 2:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer (class index) tensor, got {target.dtype}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits shape {tuple(logits.shape)} "
            "(expected target (B, *spatial) for logits (B, C, *spatial))"
        )


def ab_ce_loss(
    logits: Tensor,
    target: Tensor,
    threshold: float | Tensor,
    ignore_index: int = 255,
    min_kept: int = 1,
    weight: Tensor | None = None,
) -> Tensor:
    """Bootstrapped cross-entropy over the hard pixels (the loss of ab-CE for one threshold).

    A pixel is *kept* when it is not ``ignore_index`` and either its softmax probability of the true class
    is ``< threshold`` or it is one of the ``min_kept`` hardest valid pixels (lowest true-class
    probability) of its image. If an image has fewer valid pixels than ``min_kept``, all of them are kept.
    The loss is the mean pixel cross-entropy over the kept pixels of the whole batch (with ``weight``: the
    weighted mean ``sum w_y CE / sum w_y``, as ``F.cross_entropy``). No pixel kept (e.g. all ignored)
    gives 0.0, still attached to the graph (zero gradient, no NaN).

    Fully vectorised (``topk`` on a masked ``(B, N)`` tensor, no loop over images). Computed in float32
    (float64 stays float64) with autocast disabled.

    Args:
        logits: (B, C, H, W) raw scores (any number of spatial dims: (B, C, *)).
        target: (B, H, W) integer class indices, ``ignore_index`` for void.
        threshold: ``eta``: a float or a 0-d tensor. ``<= 0`` keeps only the ``min_kept`` pixels per image,
            ``> 1`` keeps every valid pixel (plain cross-entropy).
        ignore_index: label that never counts.
        min_kept: minimum number of pixels kept per image (>= 0).
        weight: optional (C,) class weights.

    Returns:
        0-d tensor (float32, or float64 for float64 logits).

    Raises:
        ValueError: on mismatching shapes, a non-integer target, a negative ``min_kept``, a non-scalar
            ``threshold`` or a ``weight`` not of shape (C,).

    >>> logits = torch.tensor([[[[4.0]], [[0.0]]], [[[0.0]], [[4.0]]]])  # (2, 2, 1, 1): both confident
    >>> target = torch.tensor([[[0]], [[0]]])  # the first right, the second wrong
    >>> round(float(ab_ce_loss(logits, target, threshold=0.9, min_kept=0)), 4)  # only the hard pixel
    4.0181
    >>> round(float(ab_ce_loss(logits, target, threshold=0.9)), 4)  # min_kept=1 per image: the easy one too
    2.0181
    """
    _check_logits_target(logits, target)
    check_int(min_kept, "min_kept", 0)
    if isinstance(threshold, Tensor):
        if threshold.numel() != 1 or threshold.dim() > 1:
            raise ValueError(f"threshold must be a float or a 0-d tensor, got shape {tuple(threshold.shape)}")
        thr: Tensor | float = threshold.detach().reshape(()).to(device=logits.device)
    elif isinstance(threshold, bool):
        raise ValueError("threshold must be a float or a 0-d tensor, got bool")
    else:
        thr = float(threshold)
    num_classes = logits.shape[1]
    if weight is not None and (not isinstance(weight, Tensor) or weight.shape != (num_classes,)):
        raise ValueError(f"weight must be a tensor of shape ({num_classes},)")

    dtype = compute_dtype(logits)
    batch = logits.shape[0]
    with no_autocast(logits.device.type):
        logp = F.log_softmax(logits.to(dtype), dim=1).reshape(batch, num_classes, -1)  # (B, C, N)
        tgt = target.reshape(batch, -1)  # (B, N)
        valid = tgt != ignore_index
        safe_tgt = torch.where(valid, tgt, torch.zeros_like(tgt)).long()
        logp_true = logp.gather(1, safe_tgt.unsqueeze(1)).squeeze(1)  # (B, N)
        ce = -logp_true
        p_true = logp_true.detach().exp()
        if isinstance(thr, Tensor):
            thr = thr.to(dtype)
        keep = valid & (p_true < thr)

        k = min(min_kept, tgt.shape[1])
        if k > 0:
            # The k hardest valid pixels of every image: invalid ones are pushed to +inf so that topk
            # (smallest) only picks them when an image has fewer than k valid pixels; those are dropped.
            scores = p_true.masked_fill(~valid, math.inf)
            values, idx = scores.topk(k, dim=1, largest=False)
            forced = torch.zeros_like(keep).scatter_(1, idx, torch.isfinite(values))
            keep = keep | forced

        if weight is None:
            w = keep.to(dtype)
        else:
            w = weight.detach().to(device=logits.device, dtype=dtype)[safe_tgt] * keep.to(dtype)
        # where() instead of a product so that a non-finite CE of a dropped pixel cannot leak a NaN.
        num = torch.where(keep, ce * w, torch.zeros_like(ce)).sum()
        return safe_divide(num, w.sum())


class AnnealedBootstrappedCE(nn.Module):
    """Annealed bootstrapped cross-entropy (ab-CE) with its threshold schedule.

    ``eta(i) = 1/C + (final_threshold - 1/C) * ramp(i, ramp_fraction * total_iters)`` where ``ramp`` is the
    chosen schedule of :mod:`cct_losses.rampups`. The original CCT: ``schedule="log"`` (``1 - exp(-5 t)``,
    which ends at 0.9933 of the way, so ``eta`` ends a little below ``final_threshold``, e.g. 0.894 for 21
    classes, exactly as the original), over the first 40% of training (``ramp_fraction=0.4``); afterwards
    ``eta`` stays constant.

    Args:
        num_classes: C (>= 1); the threshold starts at ``1 / C``.
        total_iters: total number of training iterations (>= 1).
        ramp_fraction: fraction of training over which the threshold anneals, in (0, 1].
        final_threshold: threshold at the end of the ramp, in (0, 1].
        schedule: ``"log"`` (original), ``"linear"``, ``"sigmoid"`` (alias ``"exp"``), ``"step"``.
        ignore_index: label that never counts.
        min_kept: minimum number of pixels kept per image (>= 0).
        weight: optional (C,) class weights (registered as a buffer).

    ``forward(logits, target, iteration)``: logits (B, C, H, W), target (B, H, W), iteration the current
    0-based training iteration; returns the 0-d loss.

    Raises:
        ValueError: naming the offending argument.

    >>> loss = AnnealedBootstrappedCE(num_classes=4, total_iters=100, ramp_fraction=0.4)
    >>> round(loss.threshold(0), 4), round(loss.threshold(40), 4)  # from 1/C towards 0.9
    (0.25, 0.8956)
    """

    weight: Tensor | None

    def __init__(
        self,
        num_classes: int,
        total_iters: int,
        ramp_fraction: float = 0.4,
        final_threshold: float = 0.9,
        schedule: str = "log",
        ignore_index: int = 255,
        min_kept: int = 1,
        weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        check_int(num_classes, "num_classes", 1)
        check_int(total_iters, "total_iters", 1)
        check_int(min_kept, "min_kept", 0)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if isinstance(ramp_fraction, bool) or not 0.0 < float(ramp_fraction) <= 1.0:
            raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction!r}")
        if isinstance(final_threshold, bool) or not 0.0 < float(final_threshold) <= 1.0:
            raise ValueError(f"final_threshold must be in (0, 1], got {final_threshold!r}")
        self._ramp = _resolve_schedule(schedule)
        if weight is not None and (not isinstance(weight, Tensor) or weight.shape != (num_classes,)):
            raise ValueError(f"weight must be a tensor of shape ({num_classes},)")
        self.num_classes = num_classes
        self.total_iters = total_iters
        self.ramp_fraction = float(ramp_fraction)
        self.final_threshold = float(final_threshold)
        self.schedule = schedule
        self.ignore_index = ignore_index
        self.min_kept = min_kept
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    @property
    def start_threshold(self) -> float:
        """The threshold at iteration 0: ``1 / C``."""
        return 1.0 / self.num_classes

    @property
    def ramp_iters(self) -> float:
        """Length of the annealing in iterations: ``ramp_fraction * total_iters``."""
        return self.ramp_fraction * self.total_iters

    def threshold(self, iteration: int | float) -> float:
        """Threshold ``eta`` at the given 0-based iteration (constant after the ramp)."""
        start = self.start_threshold
        return float(start + (self.final_threshold - start) * self._ramp(iteration, self.ramp_iters))

    def forward(self, logits: Tensor, target: Tensor, iteration: int | float) -> Tensor:
        """ab-CE of ``logits`` (B, C, H, W) against ``target`` (B, H, W) at ``iteration``."""
        if logits.dim() >= 2 and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} classes, expected num_classes={self.num_classes}"
            )
        return ab_ce_loss(
            logits,
            target,
            self.threshold(iteration),
            ignore_index=self.ignore_index,
            min_kept=self.min_kept,
            weight=self.weight,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, total_iters={self.total_iters}, "
            f"ramp_fraction={self.ramp_fraction}, final_threshold={self.final_threshold}, "
            f"schedule={self.schedule!r}, ignore_index={self.ignore_index}, min_kept={self.min_kept}"
        )
