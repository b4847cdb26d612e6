"""Evaluation: mIoU, per-class IoU and pixel accuracy, single- or multi-scale with flips, distributed-correct."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from cct_train.metrics import ConfusionMatrix, SegmentationScores
from cct_train.progress import progress_iter

Normalize = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Class probabilities averaged over scales (and horizontal flips), at the input size.

    Args:
        images: (B, 3, H, W) normalised float images.

    Returns:
        (B, C, H, W) averaged softmax probabilities (single scale without flip: plain softmax).
    """
    height, width = images.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        scaled = images
        if scale != 1.0:
            size = (max(8, round(height * scale)), max(8, round(width * scale)))
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        views = [scaled, scaled.flip(-1)] if flip else [scaled]
        for index, view in enumerate(views):
            logits = model(view)
            if index == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(
                    logits.float(), size=(height, width), mode="bilinear", align_corners=False
                )
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))


def prepare_images(batch_images: torch.Tensor, normalize: Normalize | None) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float images on the same device."""
    images = batch_images.float() / 255.0 if batch_images.dtype == torch.uint8 else batch_images.float()
    return normalize(images) if normalize is not None else images


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    accelerator: Accelerator | None = None,
    normalize: Normalize | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    ignore_index: int = 255,
    progress: bool = False,
) -> SegmentationScores:
    """Evaluate the main path of `model` on a labeled loader.

    Under DDP each process predicts its shard; predictions and labels are gathered with
    `gather_for_metrics` (which drops the sampler's padding duplicates) before the confusion matrix, so the
    counts are summed over all processes before any division.
    """
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    batches: Any = progress_iter(loader, "evaluating") if progress else loader
    for batch in batches:
        images = prepare_images(batch["image"].to(device), normalize)
        target = batch["mask"].to(device)
        probs = predict_logits(model, images, scales=scales, flip=flip)
        pred = probs.argmax(1)
        if accelerator is not None:
            pred, target = accelerator.gather_for_metrics((pred, target))
        matrix.update(pred, target)
    model.train(was_training)
    return matrix.compute()
