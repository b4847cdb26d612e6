"""What the weak-label steps take from a training config, so that the pseudo-labels are named and sized like
the samples the trainer reads with ``data.pseudo_labels``: the images (``data.dataset``, ``data.root``,
``data.resize``, ``data.options``; the split defaults to ``data.train_split``), their classes, the CAM
classifier's training settings (encoder, weights, augmentation, weight decay, workers, seed), and the checked
inputs of :func:`~cct_train.weak.generate.generate_pseudo_labels`. ``cct cam train`` and ``cct
pseudo-labels`` (:mod:`cct_train.cli.weak`) are these functions plus their options and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cct_train.config import Config
from cct_train.data.build import build_split_dataset, split_names
from cct_train.data.lists import list_names
from cct_train.weak.cam import CAMCheckpoint, CAMTrainResult, load_cam_classifier, train_cam_classifier
from cct_train.weak.labels import ImageLabels, parse_background_index, read_image_labels

__all__ = [
    "PseudoLabelInputs",
    "config_classes",
    "config_images",
    "pseudo_label_inputs",
    "train_cam_from_config",
]


def config_images(
    cfg: Config, split: str | None = None, names: Path | None = None, unlabeled_only: bool = False
) -> Any:
    """The data set named by the config's data section (``split``, default ``data.train_split``), restricted
    to the names listed in the file ``names``, or with ``unlabeled_only`` to the config's unlabeled images."""
    dataset = build_split_dataset(cfg, split or cfg.data.train_split)
    if names is not None:
        dataset = dataset.subset(list_names(names))
    elif unlabeled_only:
        _, unlabeled = split_names(cfg, list(dataset.names))
        if not unlabeled:
            raise ValueError(
                "--unlabeled-only: the config leaves no unlabeled image (set data.split.n_labeled or split lists)"
            )
        dataset = dataset.subset(unlabeled)
    return dataset


def config_classes(cfg: Config, dataset: Any) -> tuple[int, list[str]]:
    """The number of classes and their names: the data set's, else ``data.num_classes`` (``class_<i>``)."""
    num = getattr(dataset, "num_classes", None) or cfg.data.num_classes
    if num is None:
        raise ValueError(
            f"the {cfg.data.dataset} data set does not say its number of classes: set data.num_classes"
        )
    names = list(getattr(dataset, "class_names", None) or [f"class_{i}" for i in range(num)])
    return int(num), names


def train_cam_from_config(
    cfg: Config,
    output: Path,
    labels: Path | None = None,
    split: str | None = None,
    names: Path | None = None,
    *,
    iterations: int = 1000,
    batch_size: int | None = None,
    encoder: str | None = None,
    output_stride: Literal[8, 16, 32] = 16,
    optimizer: Literal["sgd", "adamw"] = "sgd",
    lr: float = 0.01,
    device: str | None = None,
    seed: int | None = None,
) -> CAMTrainResult:
    """The CAM classifier trained on the config's images into ``output / "cam_classifier.pt"``; the keyword
    arguments are ``cct cam train``'s options, the rest (encoder and weights unless ``encoder``,
    augmentation, weight decay, workers, seed unless ``seed``) comes from the config. ``labels``: the
    image-level labels file (``None``: derived from the masks)."""
    dataset = config_images(cfg, split, names)
    num_classes, class_names = config_classes(cfg, dataset)
    image_labels = read_image_labels(labels, class_names) if labels is not None else None
    return train_cam_classifier(
        dataset,
        output / "cam_classifier.pt",
        num_classes=num_classes,
        class_names=class_names,
        labels=image_labels,
        encoder=encoder or cfg.model.encoder,
        output_stride=output_stride,
        pretrained=cfg.model.pretrained and encoder is None,
        weights=cfg.model.weights if encoder is None else None,
        iterations=iterations,
        batch_size=batch_size or cfg.data.batch_size,
        optimizer=optimizer,
        lr=lr,
        weight_decay=cfg.train.optimizer.weight_decay,
        crop_size=cfg.data.crop_size,
        scale_range=cfg.data.scale_range,
        hflip=cfg.data.hflip,
        num_workers=cfg.data.num_workers,
        device=device,
        seed=cfg.experiment.seed if seed is None else seed,
    )


@dataclass
class PseudoLabelInputs:
    """The classifier, the images, the background class and the image-level labels (``None``: derived) of
    a pseudo-label run, checked against each other; ``note``: a remark worth printing, else ``None``."""

    classifier: CAMCheckpoint
    dataset: Any
    background: int | None
    labels: ImageLabels | None
    note: str | None = None


def pseudo_label_inputs(
    cfg: Config,
    checkpoint: Path,
    split: str | None = None,
    names: Path | None = None,
    unlabeled_only: bool = False,
    labels: Path | None = None,
    background_index: str = "0",
) -> PseudoLabelInputs:
    """Loads the classifier and the config's images and checks them against each other, so that a mismatch
    (classes, missing labels) fails before the CAMs. With a labels file and no explicit image list, the
    images are those of the labels file."""
    loaded = load_cam_classifier(checkpoint)
    background = parse_background_index(background_index, loaded.num_classes)
    dataset = config_images(cfg, split, names, unlabeled_only)
    num_classes, _ = config_classes(cfg, dataset)
    if num_classes != loaded.num_classes:
        raise ValueError(
            f"{checkpoint} was trained for {loaded.num_classes} classes, the data set has {num_classes}"
        )
    note = None
    if background is not None and loaded.class_names[background].lower() not in ("background", "bg"):
        note = (
            f"background index {background} is class {loaded.class_names[background]!r}; "
            "pass --background-index none for a data set without a background class"
        )
    image_labels = read_image_labels(labels, loaded.class_names) if labels is not None else None
    if image_labels is not None and names is None and not unlabeled_only:
        # No explicit image list: the images of the labels file.
        dataset = dataset.subset([n for n in dataset.names if n in image_labels])
    return PseudoLabelInputs(loaded, dataset, background, image_labels, note)
