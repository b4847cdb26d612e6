"""Evaluation: mIoU, per-class IoU and pixel accuracy, single- or multi-scale with flips, distributed-correct."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from cct_train.common.logits import fit_logits
from cct_train.common.progress import progress_iter
from cct_train.eval.metrics import ConfusionMatrix, SegmentationScores, confusion_matrices

Normalize = Callable[[torch.Tensor], torch.Tensor]


def model_stride(model: nn.Module) -> int:
    """The output stride that :func:`~cct_train.common.logits.fit_logits` undoes for ``model``'s logits: its
    ``output_stride`` (``CCTModel``), 1 (a plain resize) for a model that does not say."""
    stride = getattr(model, "output_stride", None)
    return int(stride) if isinstance(stride, int) and stride >= 1 else 1


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` every ``stride`` covering ``0 .. length``; the last
    window ends exactly at ``length`` (one window starting at 0 when ``window >= length``)."""
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_window_probs(
    model: nn.Module, images: torch.Tensor, window: tuple[int, int], stride: tuple[int, int] | None = None
) -> torch.Tensor:
    """Softmax probabilities (B, C, H, W) from overlapping ``window`` crops, averaged where they overlap.

    Windows larger than the image are clipped to it; ``stride`` defaults to two thirds of the window.
    The whole batch goes through the model window by window; each window's logits are fitted to it
    (:func:`~cct_train.common.logits.fit_logits`: a window not divisible by the stride is cropped).
    """
    height, width = images.shape[-2:]
    win_h, win_w = min(window[0], height), min(window[1], width)
    step_h, step_w = (
        stride if stride is not None else (max(1, window[0] * 2 // 3), max(1, window[1] * 2 // 3))
    )
    if step_h < 1 or step_w < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, height, width), device=images.device)
    for top in window_starts(height, win_h, step_h):
        for left in window_starts(width, win_w, step_w):
            crop = images[..., top : top + win_h, left : left + win_w]
            logits = fit_logits(model(crop).float(), (win_h, win_w), stride=model_stride(model))
            probs = logits.softmax(1)
            if total is None:
                total = torch.zeros(
                    (images.shape[0], probs.shape[1], height, width), device=images.device, dtype=probs.dtype
                )
            total[..., top : top + win_h, left : left + win_w] += probs
            count[..., top : top + win_h, left : left + win_w] += 1
    assert total is not None
    return total / count


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Class probabilities averaged over scales (and horizontal flips), at the input size.

    Args:
        images: (B, 3, H, W) normalised float images.
        window: predict each (scaled, flipped) view with a sliding window of this (H, W) size, the
            overlapping windows' probabilities averaged (e.g. Cityscapes 1024x2048 with 512x1024 windows).
        stride: the windows' stride (H, W); default two thirds of the window.

    Returns:
        (B, C, H, W) averaged softmax probabilities (single scale without flip: plain softmax). Each view's
        logits are fitted to the view (:func:`~cct_train.common.logits.fit_logits`: logits larger by the
        padding of the last feature cell are cropped, never resized onto it); only a rescaled view's
        probabilities are resized to (H, W).
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
            if window is not None:
                probs = sliding_window_probs(model, view, window, stride)
                if index == 1:
                    probs = probs.flip(-1)
            else:
                # Fitted to the view before the flip back: the padding columns are at the view's right.
                logits = fit_logits(model(view).float(), view.shape[-2:], stride=model_stride(model))
                if index == 1:
                    logits = logits.flip(-1)
                probs = logits.softmax(1)
            if probs.shape[-2:] != (height, width):
                # A rescaled view: a genuine change of resolution, resized.
                probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
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
    window: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    ignore_index: int = 255,
    progress: bool = False,
) -> SegmentationScores:
    """Evaluate the main path of `model` on a labeled loader.

    ``scales`` / ``flip``: multi-scale + flip testing; ``window`` / ``stride``: sliding-window prediction
    of each view (see :func:`predict_logits`). Void pixels (``ignore_index``) are not counted.

    Images of different sizes (a batch padded by ``pad_collate``, with each image's ``"size"``) are each
    predicted at their own size, one by one: padding never reaches the model or the scores.

    Under DDP each process predicts its shard; per-image confusion matrices are gathered with
    `gather_for_metrics` (which drops the sampler's padding duplicates) and summed over all processes
    before any division.
    """
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    batches: Any = progress_iter(loader, "evaluating") if progress else loader

    def counts(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = predict_logits(model, images, scales=scales, flip=flip, window=window, stride=stride)
        return confusion_matrices(probs.argmax(1), target, num_classes, ignore_index)

    for batch in batches:
        images = prepare_images(batch["image"].to(device), normalize)
        target = batch["mask"].to(device)
        sizes = batch.get("size")
        if sizes is None or bool((sizes == torch.tensor(images.shape[-2:], device=sizes.device)).all()):
            batch_counts = counts(images, target)
        else:  # mixed sizes: each image alone at its own size (evaluation, not a training hot path)
            batch_counts = torch.cat(
                [
                    counts(images[b : b + 1, :, :h, :w], target[b : b + 1, :h, :w])
                    for b, (h, w) in enumerate(sizes.tolist())
                ]
            )
        if accelerator is not None:
            batch_counts = accelerator.gather_for_metrics(batch_counts)
        matrix.add(batch_counts)
    model.train(was_training)
    return matrix.compute()
