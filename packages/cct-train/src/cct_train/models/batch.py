"""One domain's inputs to one training step: :class:`TrainBatch`, from the trainer's augmentation to the
objective.

The trainer augments what the loaders give (``engine.trainer.Trainer._inputs``) into one ``TrainBatch`` per
domain of the step and calls the model once, ``model(batches={name: batch})`` (a single-domain run is a
multi-domain run of one); the model encodes the batch's images and hands the features with the batch to
:func:`batch_objective`, which calls :func:`~cct_train.objectives.cct.cct_objective`.

>>> import torch
>>> batch = TrainBatch(torch.rand(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long))
>>> batch.unlabeled is None, batch.consistency_weight, batch.loss_weight  # a supervised step
(True, 1.0, 1.0)
>>> batch.moved(torch.device("cpu"), limit=1).images.shape
torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from cct_train.objectives.cct import CCTDecoders, CrossViewInputs, cct_objective

__all__ = ["BATCH_KEYS", "TrainBatch", "batch_objective"]


@dataclass
class TrainBatch:
    """One domain's augmented batches and this step's loss settings.

    Attributes:
        images: ``(B_l, in_channels, H, W)`` the labeled images, augmented and normalised.
        targets: ``(B_l, H, W)`` long, their masks (``ignore_index`` = void).
        ce_threshold: ab-CE's threshold eta forced for this step; None: the one the head's supervised loss
            holds for ``step`` (plain cross-entropy for ``supervised_loss="ce"``).
        step: the training step, from which a head with ab-CE reads its threshold (it needs one of the two).
        unlabeled: ``(B_u, in_channels, H', W')`` the unlabeled images (cross-view CCT: the WEAK view);
            None: a supervised step.
        consistency_weight: w_u(t), the weight of Lu at this step.
        weak_targets: ``(B_u, H', W')`` pseudo-labels of the unlabeled images (paper 3.3), or None.
        weak_weight: w_w, the weight of the weak-label loss Lw.
        strong: cross-view CCT: ``(B_u, in_channels, H', W')`` the STRONG view of the unlabeled images.
        cutmix_box: ``(B_u, H', W')`` bool, the strong view's CutMix boxes, or None.
        cutmix_partner: ``(B_u,)`` long, the image each box is taken from, or None.
        target_confidence: the weak view's confidence threshold, or None.
        strong_weight: w_s(t), the main decoder's strong-view weight; None: it does not learn from it.
        aux_on_weak: cross-view with the auxiliary decoders on the WEAK view (``train.unlabeled.aux_view:
            weak``): the weak view is encoded with a graph and Lu is the paper's same-view CCT on it.
        loss_weight: the weight of this domain's loss in the step's sum (``domains[].loss_weight``).
    """

    images: Tensor
    targets: Tensor
    ce_threshold: float | Tensor | None = None
    step: int | None = None
    unlabeled: Tensor | None = None
    consistency_weight: float | Tensor = 1.0
    weak_targets: Tensor | None = None
    weak_weight: float | Tensor = 0.0
    strong: Tensor | None = None
    cutmix_box: Tensor | None = None
    cutmix_partner: Tensor | None = None
    target_confidence: float | None = None
    strong_weight: float | Tensor | None = None
    aux_on_weak: bool = False
    loss_weight: float = 1.0

    @classmethod
    def of(cls, inputs: TrainBatch | Mapping[str, Any], where: str = "batch") -> TrainBatch:
        """``inputs`` itself, or the batch of a mapping of the same keys (unknown keys name ``where``)."""
        if isinstance(inputs, TrainBatch):
            return inputs
        unknown = sorted(set(inputs) - set(BATCH_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: {list(BATCH_KEYS)}")
        if "images" not in inputs or "targets" not in inputs:
            raise ValueError(f"{where} needs 'images' and 'targets'")
        return cls(**inputs)

    def cross_view(self, z_weak: Tensor) -> CrossViewInputs:
        """The cross-view part of the objective's inputs, from the weak view's features ``z_weak``
        ``(B_u, D, h, w)`` (a batch with ``strong``)."""
        assert self.strong is not None
        return CrossViewInputs(
            z_weak,
            (int(self.strong.shape[-2]), int(self.strong.shape[-1])),
            self.cutmix_box,
            self.cutmix_partner,
            self.target_confidence,
            self.strong_weight,
            self.aux_on_weak,
        )

    def moved(self, device: torch.device, limit: int | None = None) -> TrainBatch:
        """A copy with every tensor on ``device``, cut to its first ``limit`` samples (None: all)."""
        changes: dict[str, Any] = {
            f.name: (value[:limit] if value.dim() else value).to(device)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), Tensor)
        }
        return replace(self, **changes)


#: The fields of :class:`TrainBatch`: the keys of a training batch given as a mapping.
BATCH_KEYS = tuple(f.name for f in fields(TrainBatch))


def batch_objective(
    head: CCTDecoders,
    batch: TrainBatch,
    z_l: Tensor,
    z_u: Tensor | None,
    z_w: Tensor | None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The step's losses of one domain (:func:`~cct_train.objectives.cct.cct_objective`) from its encoded
    batch: ``z_l`` ``(B_l, D, h, w)`` of ``batch.images``, ``z_u`` of the unlabeled images (cross-view: of
    the strong view) or None, ``z_w`` of the weak view (cross-view only) or None."""
    return cct_objective(
        head,
        z_l,
        batch.targets,
        z_u,
        consistency_weight=batch.consistency_weight,
        step=batch.step,
        ce_threshold=batch.ce_threshold,
        weak_targets=batch.weak_targets,
        weak_weight=batch.weak_weight,
        generator=generator,
        cross_view=None if z_w is None else batch.cross_view(z_w),
    )
