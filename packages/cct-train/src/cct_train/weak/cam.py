"""The CAM classifier over cct-train's encoders: trained with multi-label BCE on image-level labels (the
optimizer and poly schedule of training, engine.schedules), saved and loaded as a checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from cct_train.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cct_train.common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cct_train.common.progress import training_progress
from cct_train.data import Normalize, SegmentationAugment, build_loader, cycle
from cct_train.data.loaders import SampleCrop
from cct_train.engine.schedules import make_optimizer, poly_scheduler
from cct_train.models.encoders import build_encoder, input_normalization
from cct_train.weak.labels import CAM_CHECKPOINT_KIND, LabelLookup, resolve_device
from cct_weak import (
    CAMClassifier,
    image_labels_from_masks,
    multilabel_loss,
)

# --------------------------------------------------------------------------------------------- classifier


@dataclass
class CAMTrainResult:
    path: Path
    iterations: int
    loss: float
    seconds: float
    num_images: int


@dataclass
class CAMCheckpoint:
    """A loaded classifier and what it was trained for."""

    model: CAMClassifier
    num_classes: int
    class_names: list[str]
    encoder: str
    output_stride: int
    info: dict[str, Any] = field(default_factory=dict)
    #: ``(mean, std)`` of the input normalisation it was trained with (ImageNet's for older checkpoints).
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD)


def build_classifier(
    encoder: str,
    num_classes: int,
    output_stride: int,
    pretrained: bool = False,
    weights: str | Path | None = None,
    in_features: int | None = None,
) -> CAMClassifier:
    backbone = build_encoder(encoder, output_stride=output_stride, pretrained=pretrained, weights=weights)
    return CAMClassifier(backbone, num_classes, in_features=in_features or backbone.out_channels)


def _labelled_dataset(
    dataset: Any, labels: Mapping[str, Sequence[int]] | None, num_classes: int
) -> tuple[Any, LabelLookup | None]:
    """The images to train on and where their labels come from: with ``labels``, the listed images only,
    without masks (the labels file is the supervision, not the masks); else the masks, which must exist."""
    names_all = list(dataset.names)
    if labels is None:
        if not getattr(dataset, "has_masks", False):
            raise ValueError("no image-level labels given and the data set has no masks to derive them from")
        return dataset, None
    known = set(names_all)
    listed = [n for n in labels if n in known]
    unknown = [n for n in labels if n not in known]
    if unknown:
        raise ValueError(
            f"{len(unknown)} image(s) of the labels are not in the data set, e.g. {unknown[:5]} "
            f"(the data set has {len(names_all)} images, e.g. {names_all[:3]})"
        )
    dataset = dataset.subset(listed)
    if hasattr(dataset, "without_masks"):
        dataset = dataset.without_masks()
    return dataset, LabelLookup(list(dataset.names), labels, num_classes)


def _cam_optimizer(
    model: CAMClassifier,
    optimizer: Literal["sgd", "adamw"],
    lr: float,
    classifier_lr_factor: float,
    weight_decay: float,
    iterations: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer with the linear layer ``classifier_lr_factor`` times faster than the encoder (it starts
    from scratch, the encoder possibly pretrained), and its poly schedule."""
    groups = [
        {"params": list(model.encoder.parameters()), "lr": lr},
        {"params": list(model.classifier.parameters()), "lr": lr * classifier_lr_factor},
    ]
    opt = make_optimizer(optimizer, groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return opt, poly_scheduler(opt, iterations, 0.9)


def _batch_loss(
    model: CAMClassifier,
    batch: Mapping[str, Any],
    dev: torch.device,
    augment: SegmentationAugment,
    normalize: Normalize,
    generator: torch.Generator,
    lookup: LabelLookup | None,
    num_classes: int,
) -> torch.Tensor:
    """One batch's multi-label BCE, augmented on the device; labels derived from the augmented masks, so
    that a class cropped out of the image is not asked for."""
    images = batch["image"].to(dev, non_blocking=True)
    masks = batch["mask"].to(dev, non_blocking=True) if lookup is None else None
    if batch.get("cropped", False):  # images of mixed sizes, scaled and cropped per sample by the loader
        augment = SegmentationAugment(augment.crop_size, (1.0, 1.0), augment.hflip, augment.ignore_index)
    floats, masks = augment(images, masks, generator=generator)
    if lookup is not None:
        targets = lookup(batch["name"], dev)
    else:
        assert masks is not None
        targets = image_labels_from_masks(masks, num_classes)
    return multilabel_loss(model(normalize(floats)), targets)


def _fit(
    model: CAMClassifier,
    loss_of: Callable[[Any], torch.Tensor],
    stream: Iterator[Any],
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    iterations: int,
    log_every: int,
    quiet: bool,
    callback: Callable[[int, float], None] | None,
) -> float:
    """``iterations`` optimizer steps; returns the last logged loss."""
    last_loss = math.nan
    model.train()
    with training_progress(iterations, disable=quiet) as progress:
        for step in range(1, iterations + 1):
            loss = loss_of(next(stream))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
            if step % log_every == 0 or step == iterations:
                last_loss = float(loss.detach())  # one host sync per log interval
                progress.update(step, loss=last_loss)
                if callback is not None:
                    callback(step, last_loss)
            else:
                progress.update(step)
    return last_loss


def _checkpoint(
    model: CAMClassifier,
    encoder: str,
    normalization: tuple[Sequence[float], Sequence[float]],
    output_stride: int,
    class_names: list[str],
    iterations: int,
    loss: float,
    from_file: bool,
    num_images: int,
) -> dict[str, Any]:
    """What :func:`load_cam_classifier` needs to rebuild the classifier, and how it was trained."""
    mean, std = normalization
    return {
        "kind": CAM_CHECKPOINT_KIND,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "encoder": encoder,
        "mean": list(mean),
        "std": list(std),
        "output_stride": int(output_stride),
        "in_features": int(model.in_features),
        "num_classes": int(model.num_classes),
        "class_names": class_names,
        "iterations": int(iterations),
        "loss": float(loss),
        "labels": "file" if from_file else "masks",
        "num_images": num_images,
    }


def train_cam_classifier(
    dataset: Any,
    output: str | Path,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    labels: Mapping[str, Sequence[int]] | None = None,
    encoder: str = "timm:resnet50",
    output_stride: Literal[8, 16, 32] = 16,
    pretrained: bool = False,
    weights: str | Path | None = None,
    iterations: int = 1000,
    batch_size: int = 8,
    optimizer: Literal["sgd", "adamw"] = "sgd",
    lr: float = 0.01,
    classifier_lr_factor: float = 10.0,
    weight_decay: float = 1e-4,
    crop_size: tuple[int, int] = (320, 320),
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    log_every: int = 20,
    quiet: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> CAMTrainResult:
    """Train the classification branch (encoder + GAP + linear) with multi-label BCE (paper 3.3).

    Args:
        dataset: an :class:`~cct_train.data.ImageDataset` whose images stack into batches (all one size,
            e.g. via ``resize``). Without ``labels`` it must have masks: the labels are derived from the
            (augmented) masks with :func:`cct_weak.image_labels_from_masks`.
        output: the checkpoint file to write (``.pt``), atomically.
        num_classes: ``C``.
        class_names: stored in the checkpoint (default ``class_0..``).
        labels: image-level labels by sample name (:func:`read_image_labels`); the dataset is restricted
            to the listed names.
        encoder, output_stride, pretrained, weights: passed to :func:`~cct_train.models.encoders.build_encoder`.
        iterations, batch_size: training length and batch size.
        optimizer, lr, classifier_lr_factor, weight_decay: SGD (momentum 0.9) or AdamW, poly schedule
            (power 0.9); the linear layer learns ``classifier_lr_factor`` times faster than the encoder.
        crop_size, scale_range, hflip: batched on-device augmentation (:class:`SegmentationAugment`).
        num_workers: data-loading processes.
        device: default CUDA when available.
        seed: seeds the loader order, the augmentation and the initial weights.
        log_every: host syncs for the loss every this many steps.
        quiet: no progress bar.
        callback: ``callback(step, loss)`` at each logged step.
    """
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"need iterations >= 1 and batch_size >= 1, got {iterations} and {batch_size}")
    dataset, lookup = _labelled_dataset(dataset, labels, num_classes)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = build_classifier(encoder, num_classes, output_stride, pretrained, weights).to(dev)
    opt, scheduler = _cam_optimizer(model, optimizer, lr, classifier_lr_factor, weight_decay, iterations)
    augment = SegmentationAugment(crop_size, scale_range=scale_range, hflip=hflip).to(dev)
    mean, std = input_normalization(encoder)  # what the (pretrained) encoder expects; stored below
    normalize = Normalize(mean, std).to(dev)
    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    loader = build_loader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=True,
        num_workers=num_workers,
        seed=seed,
        drop_last=True,
        crop=SampleCrop(crop_size, scale_range),
    )
    start = time.perf_counter()
    last_loss = _fit(
        model,
        lambda batch: _batch_loss(model, batch, dev, augment, normalize, generator, lookup, num_classes),
        cycle(loader),
        opt,
        scheduler,
        iterations,
        log_every,
        quiet,
        callback,
    )
    seconds = time.perf_counter() - start
    path = Path(output)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    checkpoint = _checkpoint(
        model,
        encoder,
        (mean, std),
        output_stride,
        names,
        iterations,
        last_loss,
        labels is not None,
        len(dataset),
    )
    save_checkpoint(path, checkpoint)
    return CAMTrainResult(path, iterations, float(last_loss), seconds, len(dataset))


def load_cam_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> CAMCheckpoint:
    """Rebuild the classifier saved by :func:`train_cam_classifier` (loaded with ``weights_only=True``)."""
    state = load_checkpoint(path, map_location=map_location)
    if state.get("kind") != CAM_CHECKPOINT_KIND:
        raise CheckpointError(
            f"{path} is not a CAM classifier checkpoint (kind {state.get('kind')!r}); "
            "train one with `cct cam train`"
        )
    model = build_classifier(
        str(state["encoder"]),
        int(state["num_classes"]),
        int(state["output_stride"]),
        in_features=int(state["in_features"]),
    )
    model.load_state_dict(state["model"])
    model.eval()
    info = {k: v for k, v in state.items() if k != "model"}
    return CAMCheckpoint(
        model=model,
        num_classes=int(state["num_classes"]),
        class_names=[str(n) for n in state["class_names"]],
        encoder=str(state["encoder"]),
        output_stride=int(state["output_stride"]),
        info=info,
        normalization=(
            tuple(float(v) for v in state.get("mean", IMAGENET_MEAN)),
            tuple(float(v) for v in state.get("std", IMAGENET_STD)),
        ),
    )
