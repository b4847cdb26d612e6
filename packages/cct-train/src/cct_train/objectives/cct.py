"""The CCT objective (paper 3.1-3.3): L = Ls + w_u Lu + w_w Lw, as functions of the decoders' outputs.

- :func:`supervised_loss`: Ls, cross-entropy over the labeled pixels (or ab-CE with a threshold);
- :func:`unsupervised_losses`: Lu, the K auxiliary decoders on their perturbed features against the
  (detached) main prediction, through the fused path when it applies; and Lw on pseudo-labels;
- :func:`total_loss`: their weighted sum.

``CCTModel.forward`` (one DDP forward per step) encodes the batches and calls these in this order; the
weights w_u(t) and w_w come from the trainer (engine.schedules).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_losses import ab_ce_loss, consistency_loss, weak_label_loss
from cct_train.objectives.fused import fused_consistency_loss

__all__ = ["FUSED_KINDS", "supervised_loss", "total_loss", "unsupervised_losses"]

#: Consistency kinds the fused path computes (JS has no closed-form per-pixel gradient there).
FUSED_KINDS = ("mse", "kl")


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


def unsupervised_losses(
    aux_decoders: Sequence[nn.Module],
    perturbed: Sequence[Tensor],
    main_u: Tensor,
    *,
    kind: str = "mse",
    weak_targets: Tensor | None = None,
    ignore_index: int = 255,
    fused: bool = True,
    chunk_elements: int = 1 << 21,
) -> tuple[Tensor, Tensor]:
    """``(Lu, Lw)`` of the K auxiliary decoders on their perturbed features ``perturbed`` (K x (B, D, h, w)).

    ``main_u``: the main decoder's logits on the same unlabeled features, a constant (computed without a
    graph): Lu trains the encoder and the auxiliary decoders, never the main decoder. Lu is
    ``consistency_loss(g_k(p_k(z_u)), main_u, kind)`` averaged over the K decoders, at their native
    resolution; with ``fused`` (and kind mse / kl, no weak targets) the same value and gradients through
    :func:`~cct_train.objectives.fused.fused_consistency_loss`, without the K full-size outputs. Lw
    (``weak_targets`` (B, H', W'), paper 3.3) is ``cct_losses.weak_label_loss`` of the auxiliary outputs,
    0 without weak targets.
    """
    zero = main_u.new_zeros((), dtype=torch.float32)
    if fused and weak_targets is None and kind in FUSED_KINDS:
        with torch.no_grad():
            target = torch.softmax(main_u.float(), dim=1)
        loss_unsup = fused_consistency_loss(
            list(aux_decoders),  # type: ignore[arg-type]
            perturbed,
            target,
            kind,
            chunk_elements=chunk_elements,
        )
        return loss_unsup, zero
    aux_outputs = [dec(z_p) for dec, z_p in zip(aux_decoders, perturbed, strict=True)]
    loss_unsup = consistency_loss(aux_outputs, main_u, kind=kind)
    if weak_targets is None:
        return loss_unsup, zero
    if weak_targets.dim() == 4 and weak_targets.shape[1] == 1:
        weak_targets = weak_targets[:, 0]
    return loss_unsup, weak_label_loss(aux_outputs, weak_targets.long(), ignore_index=ignore_index)


def total_loss(
    loss_sup: Tensor,
    loss_unsup: Tensor,
    loss_weak: Tensor,
    consistency_weight: float | Tensor = 1.0,
    weak_weight: float | Tensor = 0.0,
) -> Tensor:
    """L = Ls + w_u Lu + w_w Lw (paper eq. 4, with the weak-label term of 3.3).

    >>> round(float(total_loss(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(2.0), 30.0, 0.4)), 4)
    16.8
    """
    return loss_sup + consistency_weight * loss_unsup + weak_weight * loss_weak
