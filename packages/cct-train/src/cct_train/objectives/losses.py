"""The owners of CCT's two losses (paper 3.1-3.2), one object each, held by the model (or each domain's head):

- :class:`SupervisedTerm`: Ls, cross-entropy or ab-CE over the labeled pixels, with ab-CE's annealed
  threshold eta(step) (``cct_losses.AnnealedBootstrappedCE``'s schedule);
- :class:`ConsistencyTerm`: Lu, the K auxiliary decoders against the detached main prediction: its kind
  (mse | kl | js), its confidence mask, its plain path (``cct_losses.consistency_loss`` on the K outputs)
  and its fused path (:func:`~cct_train.objectives.fused.fused_consistency_loss`, without the K outputs).
  Both paths compute the kind's one per-element definition, ``cct_losses.CONSISTENCY_POINTWISE[kind]``.

:func:`~cct_train.objectives.cct.cct_objective` calls them; nothing else decides a loss's kind or threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_losses import CONSISTENCY_KINDS, AnnealedBootstrappedCE, ab_ce_loss, consistency_loss
from cct_train.objectives.fused import SubPixelDecoder, fused_consistency_loss, is_subpixel_decoder

__all__ = ["SUPERVISED_KINDS", "ConsistencyTerm", "SupervisedTerm", "supervised_loss"]

#: Ls's kinds: plain cross-entropy, or annealed bootstrapped CE (paper 3.1; ``train.supervised_loss``).
SUPERVISED_KINDS = ("ce", "abce")


@dataclass
class SupervisedTerm:
    """Ls: ``"ce"`` (mean cross-entropy over the non-void pixels) or ``"abce"`` (only the pixels whose
    true-class probability is below eta count, at least ``min_kept`` per image; eta anneals from 1/C to 0.9
    along the original's log ramp over ``ramp_fraction`` of ``iterations``).

    ``threshold(step)``: eta at a 0-based training step (``None`` for ``"ce"``). Calling the term on
    ``logits`` (B, C, H, W) and ``targets`` (B, H, W) gives Ls at ``step``; an explicit ``threshold``
    computes ab-CE at that threshold whatever the kind.

    >>> term = SupervisedTerm("abce", num_classes=4, iterations=100)
    >>> term.threshold(0), round(term.threshold(40), 4)
    (0.25, 0.8956)
    >>> SupervisedTerm().threshold(40) is None
    True
    """

    kind: str = "ce"
    num_classes: int | None = None
    iterations: int | None = None
    ramp_fraction: float = 0.4
    ignore_index: int = 255
    min_kept: int = 1
    _schedule: AnnealedBootstrappedCE | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in SUPERVISED_KINDS:
            raise ValueError(f"supervised loss must be one of {SUPERVISED_KINDS}, got {self.kind!r}")
        if self.kind == "abce":
            if self.num_classes is None or self.iterations is None:
                raise ValueError(
                    "the ab-CE supervised loss anneals its threshold over the training: give num_classes "
                    "and iterations (train.iterations)"
                )
            self._schedule = AnnealedBootstrappedCE(
                self.num_classes, self.iterations, ramp_fraction=self.ramp_fraction
            )

    def threshold(self, step: int) -> float | None:
        """ab-CE's eta at the 0-based training ``step``; ``None`` for plain cross-entropy."""
        return None if self._schedule is None else self._schedule.threshold(step)

    def __call__(
        self,
        logits: Tensor,
        targets: Tensor,
        *,
        step: int | None = None,
        threshold: float | Tensor | None = None,
    ) -> Tensor:
        """Ls of ``logits`` (B, C, H, W) against ``targets`` (B, H, W) (long), a 0-d tensor."""
        if threshold is None and self._schedule is not None:
            if step is None:
                raise ValueError("the ab-CE supervised loss needs the training step (step=) or a threshold")
            threshold = self._schedule.threshold(step)
        return supervised_loss(
            logits, targets, threshold, ignore_index=self.ignore_index, min_kept=self.min_kept
        )


def supervised_loss(
    logits: Tensor,
    targets: Tensor,
    ce_threshold: float | Tensor | None = None,
    *,
    ignore_index: int = 255,
    min_kept: int = 1,
) -> Tensor:
    """Ls: mean cross-entropy over non-void pixels (0, not NaN, when all are void), or ab-CE
    (``cct_losses.ab_ce_loss``) when ``ce_threshold`` is given. ``logits`` (B, C, H, W), ``targets`` (B, H, W).

    >>> logits = torch.zeros(1, 3, 2, 2)
    >>> round(float(supervised_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long))), 4)  # log(3)
    1.0986
    >>> float(supervised_loss(logits, torch.full((1, 2, 2), 255)))  # every pixel void
    0.0
    """
    if ce_threshold is not None:
        return ab_ce_loss(logits, targets, ce_threshold, ignore_index=ignore_index, min_kept=min_kept)
    # Summed then divided by the count on the device: no host sync.
    total = F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum")
    count = (targets != ignore_index).sum().clamp_min(1)
    return total / count


@dataclass
class ConsistencyTerm:
    """Lu: ``mean_k d(softmax(g_k(p_k(z_u))), softmax(main_u))`` over the K auxiliary decoders, ``d`` the
    ``kind``'s per-element definition in ``cct_losses`` (mse: mean over all elements; kl, js: summed over
    the classes, mean over the pixels), at the decoders' native resolution.

    ``confidence``: leave out the pixels where the main prediction's max-probability is below it (the
    original code's confidence masking; ``None``, the paper: every pixel). ``fused``: compute Lu as the K
    sub-pixel decoders' batched GEMMs, back-propagated chunk by chunk in the forward pass (same value and
    gradients, faster, without the K full-resolution outputs; ``chunk_elements`` output elements per
    chunk bound its temporary memory); ``False``, or decoders it cannot read: one call per decoder.
    """

    kind: str = "mse"
    confidence: float | None = None
    fused: bool = True
    chunk_elements: int = 1 << 21

    def __post_init__(self) -> None:
        if self.kind not in CONSISTENCY_KINDS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_KINDS}, got {self.kind!r}")
        conf = self.confidence
        if conf is not None and (isinstance(conf, bool) or not 0.0 <= float(conf) <= 1.0):
            raise ValueError(f"confidence must be None or a float in [0, 1], got {conf!r}")
        self.confidence = None if conf is None else float(conf)

    def with_confidence(self, confidence: float | None) -> ConsistencyTerm:
        """The same loss with another confidence threshold (cross-view CCT's weak-view target's)."""
        return dataclasses.replace(self, confidence=confidence)

    def __call__(self, decoders: Sequence[nn.Module], perturbed: Sequence[Tensor], main_u: Tensor) -> Tensor:
        """Lu of ``decoders`` on their ``perturbed`` features (K x (B, D, h, w)) against ``main_u``
        (B, C, H, W), the main logits (a constant: no gradient reaches them). The fused path when it applies."""
        if self.fused and all(is_subpixel_decoder(d) for d in decoders):
            return self.fused_loss(decoders, perturbed, main_u)  # type: ignore[arg-type]
        return self.plain_loss([dec(z) for dec, z in zip(decoders, perturbed, strict=True)], main_u)

    def plain_loss(self, aux_outputs: Sequence[Tensor], main_u: Tensor) -> Tensor:
        """Lu from the K auxiliary logits ``aux_outputs`` (K x (B, C, H, W)): ``cct_losses.consistency_loss``."""
        return consistency_loss(list(aux_outputs), main_u, kind=self.kind, confidence=self.confidence)

    def fused_loss(
        self, decoders: Sequence[SubPixelDecoder], perturbed: Sequence[Tensor], main_u: Tensor
    ) -> Tensor:
        """Lu through :func:`~cct_train.objectives.fused.fused_consistency_loss` (no K outputs kept)."""
        with torch.no_grad():
            target = torch.softmax(main_u.float(), dim=1)
        return fused_consistency_loss(
            decoders,
            perturbed,
            target,
            self.kind,
            confidence=self.confidence,
            chunk_elements=self.chunk_elements,
        )
