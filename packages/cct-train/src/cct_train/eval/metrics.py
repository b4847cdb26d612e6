"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel accuracy.

A confusion matrix is additive, so under distributed evaluation each process accumulates its own and the
matrices are summed across processes *before* any division (a mean of per-process mIoUs would be wrong).
Written here rather than taken from torchmetrics to keep cct-train's dependencies small; the arithmetic is
a single bincount.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Confusion matrix of a batch.

    Args:
        pred: (B, H, W) integer class predictions.
        target: (B, H, W) integer labels; `ignore_index` (and anything outside [0, C)) is left out.
        num_classes: C.

    Returns:
        (C, C) int64 matrix, rows = true class, columns = predicted class.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    target = target.long()
    pred = pred.long()
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid].clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrices(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """One confusion matrix per sample: pred, target (B, H, W) -> (B, C, C) int64 (rows = true class).

    Per-sample counts have one shape whatever the image size, so processes that evaluated images of
    different sizes can gather them (and drop the sampler's padding duplicates) before summing.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    batch = pred.shape[0]
    target = target.long().reshape(batch, -1)
    pred = pred.long().reshape(batch, -1).clamp(0, num_classes - 1)
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    sample = torch.arange(batch, device=pred.device)[:, None].expand_as(target)
    index = (sample * num_classes + target) * num_classes + pred
    counts = torch.bincount(index[valid], minlength=batch * num_classes * num_classes)
    return counts.reshape(batch, num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationScores:
    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    iou: list[float]
    present: list[bool]

    def as_dict(self, class_names: list[str] | None = None) -> dict[str, object]:
        names = class_names or [str(i) for i in range(len(self.iou))]
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "per_class_iou": {
                name: (iou if present else None)
                for name, iou, present in zip(names, self.iou, self.present, strict=False)
            },
        }


def scores_from_confusion(matrix: torch.Tensor) -> SegmentationScores:
    """mIoU over the classes that occur (in labels or predictions), as the usual benchmark scripts do."""
    matrix = matrix.double()
    true_positive = matrix.diag()
    per_true = matrix.sum(1)
    per_pred = matrix.sum(0)
    union = per_true + per_pred - true_positive
    present = union > 0
    iou = torch.where(present, true_positive / union.clamp_min(1), torch.zeros_like(union))
    total = matrix.sum()
    pixel_accuracy = float(true_positive.sum() / total) if total > 0 else 0.0
    labeled = per_true > 0
    mean_accuracy = float((true_positive[labeled] / per_true[labeled]).mean()) if labeled.any() else 0.0
    miou = float(iou[present].mean()) if present.any() else 0.0
    return SegmentationScores(
        miou=miou,
        pixel_accuracy=pixel_accuracy,
        mean_accuracy=mean_accuracy,
        iou=[float(v) for v in iou],
        present=[bool(v) for v in present],
    )


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches on the batches' device (no host sync per batch)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        batch = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.matrix = batch if self.matrix is None else self.matrix + batch

    def add(self, counts: torch.Tensor) -> None:
        """Add counts already computed: a (C, C) matrix or per-sample (B, C, C) matrices."""
        counts = counts.reshape(-1, self.num_classes, self.num_classes).sum(0)
        self.matrix = counts if self.matrix is None else self.matrix + counts

    def compute(self) -> SegmentationScores:
        if self.matrix is None:
            raise RuntimeError("no batch was added to the confusion matrix")
        return scores_from_confusion(self.matrix.cpu())
