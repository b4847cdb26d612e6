"""From a `Config` to data: datasets, the labeled / unlabeled split, loaders and the device transform."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cct_train.config import Config
from cct_train.data import (
    Normalize,
    SegmentationAugment,
    UnlabeledFolder,
    build_dataset,
    build_loader,
    make_split,
)
from cct_train.data.base import ImageDataset
from cct_train.data.folder import DATASET_JSON, read_dataset_json
from cct_train.data.lists import list_names
from cct_train.data.loaders import SampleCrop
from cct_train.data.pseudo_label_files import WithPseudoLabels
from cct_train.models.encoders import resolve_normalization


class TrainTransform(nn.Module):
    """uint8 batches -> augmented, normalised float batches, on the batches' device.

    images: (B, 3, H, W) uint8; masks: (B, H, W) int64 or None. Returns ((B, 3, h, w) float, (B, h, w) | None).
    ``cropped=True``: the batch was already scaled and cropped per sample in the loader (images of mixed
    sizes, :class:`~cct_train.data.loaders.CropCollate`): only the flip is left to draw.
    """

    def __init__(self, augment: SegmentationAugment, normalize: Normalize) -> None:
        super().__init__()
        self.augment = augment
        self.normalize = normalize
        self.flip = SegmentationAugment(
            augment.crop_size, (1.0, 1.0), hflip=augment.hflip, ignore_index=augment.ignore_index
        )

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        cropped: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        floats, masks = self.geometric(images, masks, generator=generator, cropped=cropped)
        return self.normalize(floats), masks

    def geometric(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        cropped: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The augmentation without the normalisation: ((B, 3, h, w) float in [0, 1], masks). Cross-view
        training perturbs these (colours act on [0, 1] images) before it normalises them."""
        floats = images.float() / 255.0
        if cropped:
            if tuple(images.shape[-2:]) != self.augment.crop_size:
                raise ValueError(
                    f"a cropped batch must be {self.augment.crop_size}, got {tuple(images.shape[-2:])}"
                )
            return self.flip(floats, masks, generator=generator)
        return self.augment(floats, masks, generator=generator)

    def batch(
        self, batch: Mapping[str, Any], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` of a collated batch (its ``"image"``, ``"mask"`` when present, ``"cropped"``)."""
        return self(
            batch["image"], batch.get("mask"), generator=generator, cropped=bool(batch.get("cropped", False))
        )


@dataclass
class TrainingData:
    num_classes: int
    class_names: list[str]
    palette: list[list[int]]
    labeled_loader: DataLoader
    unlabeled_loader: DataLoader | None
    val_loader: DataLoader | None
    augment: TrainTransform
    normalize: Normalize
    n_labeled: int
    n_unlabeled: int


def build_split_dataset(config: Config, split: str) -> Any:
    """The data set of one split of ``data`` (``data.options`` and ``data.resize`` applied), as training builds it."""
    data = config.data
    if data.root is None:
        raise ValueError(
            f"data.root is not set: where is the {data.dataset} data? Give a config with -c (configs/ has "
            "ready ones, e.g. configs/camvid-cct.yaml) or --set data.root=DIR"
        )
    kwargs: dict[str, Any] = dict(data.options)
    if data.dataset == "folder":
        if data.num_classes is not None:
            kwargs.setdefault("num_classes", data.num_classes)
        elif (
            "num_classes" not in kwargs
            and data.root is not None
            and Path(data.root).is_dir()
            and "num_classes" not in read_dataset_json(Path(data.root))
        ):
            raise ValueError(
                f"data.num_classes is not set and {Path(data.root) / DATASET_JSON} does not give it: "
                "set it to the number of classes of your masks, e.g. --set data.num_classes=2 (mask "
                "values 0 .. num_classes - 1; 255 is ignored)"
            )
    return build_dataset(data.dataset, root=data.root, split=split, resize=data.resize, **kwargs)


def _check_classes(config: Config, dataset: Any) -> int:
    num_classes = int(dataset.num_classes)
    if config.data.num_classes is not None and config.data.num_classes != num_classes:
        raise ValueError(
            f"data.num_classes is {config.data.num_classes} but the {config.data.dataset} data set has {num_classes}"
        )
    return num_classes


def split_names(config: Config, names: list[str]) -> tuple[list[str], list[str]]:
    """The labeled and unlabeled sample names of the training split."""
    split = config.data.split
    if split.labeled_list is not None:
        labeled = list_names(split.labeled_list)
        if split.unlabeled_list is not None:
            unlabeled = list_names(split.unlabeled_list)
        else:
            chosen = set(labeled)
            unlabeled = [n for n in names if n not in chosen]
        return labeled, unlabeled
    if split.n_labeled is None:
        return list(names), []
    drawn = make_split(names, split.n_labeled, split.seed)
    return list(drawn.labeled), list(drawn.unlabeled)


_D = TypeVar("_D", bound=ImageDataset)


def drop_samples(dataset: _D, names: Iterable[str]) -> _D:
    """``dataset`` without the samples named in ``names`` (the same object when none of them is in it)."""
    drop = set(names)
    keep = [n for n in dataset.names if n not in drop]
    return dataset if len(keep) == len(dataset) else dataset.subset(keep)


def build_data(config: Config, drop: Mapping[str, set[str]] | None = None) -> TrainingData:
    """Loaders and transforms for training. ``drop``: sample names to leave out per part ("train",
    "unlabeled_root", "val"), from the data check with ``data.skip_bad_samples``."""
    data = config.data
    drop = drop or {}
    train_set = drop_samples(build_split_dataset(config, data.train_split), drop.get("train", set()))
    num_classes = _check_classes(config, train_set)
    labeled_names, unlabeled_names = split_names(config, train_set.names)
    present = set(train_set.names)  # split lists may name samples that were dropped as bad
    labeled_set = train_set.subset([n for n in labeled_names if n in present])
    unlabeled_set = _unlabeled_set(
        config, train_set.subset([n for n in unlabeled_names if n in present]), num_classes, drop
    )
    seed = config.experiment.seed
    # Images of several sizes: a batch of them is scaled and cropped per sample in the loader (same
    # distribution as the batched augmentation on the device, which a batch of one size gets).
    crop = SampleCrop(data.crop_size, data.scale_range, data.ignore_index)
    labeled_loader = build_loader(
        labeled_set,
        batch_size=data.batch_size,
        shuffle=True,
        num_workers=data.num_workers,
        seed=seed,
        drop_last=True,
        crop=crop,
    )
    unlabeled_loader = None
    if unlabeled_set is not None and not config.supervised_only:
        unlabeled_loader = build_loader(
            unlabeled_set,
            batch_size=data.unlabeled_batch_size or data.batch_size,
            shuffle=True,
            num_workers=data.num_workers,
            seed=seed + 1,
            drop_last=True,
            crop=crop,
        )
    val_loader = None
    if data.val_split:
        val_set = drop_samples(build_split_dataset(config, data.val_split), drop.get("val", set()))
        val_loader = _evaluation_loader(config, val_set)
    normalize = Normalize(*model_normalization(config))
    augment = SegmentationAugment(
        crop_size=data.crop_size,
        scale_range=data.scale_range,
        hflip=data.hflip,
        ignore_index=data.ignore_index,
    )
    return TrainingData(
        num_classes=num_classes,
        class_names=list(train_set.class_names),
        palette=[list(c) for c in train_set.palette],
        labeled_loader=labeled_loader,
        unlabeled_loader=unlabeled_loader,
        val_loader=val_loader,
        augment=TrainTransform(augment, normalize),
        normalize=normalize,
        n_labeled=len(labeled_set),
        n_unlabeled=len(unlabeled_set) if unlabeled_set is not None else 0,
    )


def _unlabeled_set(
    config: Config, unlabeled: ImageDataset, num_classes: int, drop: Mapping[str, set[str]]
) -> Any:
    """The unlabeled images of training: ``unlabeled`` (the training split's own, masks dropped) and
    ``data.unlabeled_root``, each with its pseudo-label with ``data.pseudo_labels``; an ImageDataset, a
    ConcatDataset of them or None (an error where CCT needs them)."""
    data = config.data
    sets: list[Dataset[Any]] = []
    if len(unlabeled):
        sets.append(unlabeled.without_masks())
    if data.unlabeled_root is not None:
        folder = UnlabeledFolder(data.unlabeled_root, resize=data.resize)
        sets.append(drop_samples(folder, drop.get("unlabeled_root", set())))
    if data.pseudo_labels is not None and not config.supervised_only:
        # Weak labels (paper 3.3): each unlabeled sample carries its pseudo-label as "mask".
        sets = [
            WithPseudoLabels(s, data.pseudo_labels, num_classes=num_classes, ignore_index=data.ignore_index)
            for s in sets
        ]
    if not config.supervised_only and not sets:
        raise ValueError(
            "CCT (and cross-view training) needs unlabeled images: set data.split.n_labeled (the rest of the training split becomes "
            "unlabeled), data.split.unlabeled_list or data.unlabeled_root; or use train.mode=supervised"
        )
    if not sets:
        return None
    return sets[0] if len(sets) == 1 else torch.utils.data.ConcatDataset(sets)


def _evaluation_loader(config: Config, dataset: Dataset[Any]) -> DataLoader:
    """A loader over ``dataset`` for evaluation: in order, each image at its own size (padded batches
    record the sizes; see evaluate)."""
    data = config.data
    return build_loader(
        dataset,
        batch_size=data.val_batch_size,
        shuffle=False,
        num_workers=data.num_workers,
        seed=config.experiment.seed,
        pad=True,
        ignore_index=data.ignore_index,
    )


def build_eval_loader(
    config: Config, split: str | None = None
) -> tuple[DataLoader, Normalize, int, list[str]]:
    """A loader over an evaluation split (default: the config's val split) and what evaluation needs."""
    name = split or config.data.val_split
    if not name:
        raise ValueError("no split to evaluate: set data.val_split or pass --split")
    dataset = build_split_dataset(config, name)
    num_classes = _check_classes(config, dataset)
    loader = _evaluation_loader(config, dataset)
    return loader, Normalize(*model_normalization(config)), num_classes, list(dataset.class_names)


def model_normalization(config: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the configured model expects of [0, 1] images: ``model.mean`` / ``model.std``, or
    the encoder's pretrained statistics."""
    model = config.model
    return resolve_normalization(model.encoder, model.mean, model.std)
