"""PASCAL VOC 2012 with the SBD augmented masks (21 classes, 255 = void), in its official layout.

::

    root/                                    the folder holding VOCdevkit/ (or VOCdevkit/, or VOC2012/ itself)
      VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg                  every image (VOC and SBD ids alike)
        SegmentationClass/<id>.png           VOC masks: P-mode palette PNGs whose index values ARE the
                                             class ids 0..20; 255 (drawn cream) is the void border
        SegmentationClassAug/<id>.png        optional: SBD-augmented masks, 8-bit index PNGs 0..20, 255
        ImageSets/Segmentation/train.txt     1,464 ids      val.txt  1,449 ids      (one id per line)
        ImageSets/SegmentationAug/train_aug.txt   optional list of the 10,582 "trainaug" ids (bare ids or
                                             DeepLab-style lines "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png")
      benchmark_RELEASE/dataset/             optional: the SBD release itself, instead of SegmentationClassAug
        cls/<id>.mat                         GTcls.Segmentation (reading these needs scipy)
        img/<id>.jpg  train.txt  val.txt

Splits: ``"train"`` (the 1,464 pixel-labeled VOC images), ``"val"`` (1,449), ``"trainval"`` and
``"trainaug"``: the 10,582 images of VOC train plus SBD train and val, without any VOC val image (the
``train_aug.txt`` list when present, else that union computed from the masks present). The paper's
semi-supervised setting trains on ``trainaug`` with the 1,464 ``train`` ids labeled and the other 9,118
unlabeled; ``cct data prepare voc`` writes these split lists (and the other standard subsets).

Masks: a VOC id's mask comes from ``SegmentationClass``; SBD-only ids from ``SegmentationClassAug``, else
from the SBD ``.mat``. ``labels="voc" | "aug" | "sbd"`` forces one source. RGB-converted masks are mapped
through the VOC palette (unknown colours -> void).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cct_train.common.atomic import atomic_write_text
from cct_train.data.base import (
    IGNORE_INDEX,
    Item,
    Sample,
    SegmentationDataset,
    SkippedEntry,
    check_resize,
    default_palette,
    map_index_mask,
    map_rgb_mask,
    read_mask_raw,
    split_missing,
)
from cct_train.data.lists import list_names

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 21 PASCAL VOC classes (0 = background), in id order."""

VOC_PALETTE: list[tuple[int, int, int]] = default_palette(len(VOC_CLASSES))
"""The VOC colour map (bit-interleaved): class 1 aeroplane is (128, 0, 0), 15 person (192, 128, 128)."""

VOC_VOID_COLOUR: tuple[int, int, int] = default_palette(256)[255]
"""Colour of the void border (index 255) in the VOC palette: (224, 224, 192)."""

VOC_SPLITS = ("train", "val", "trainval", "trainaug")

LabelSource = Literal["auto", "voc", "aug", "sbd"]


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder under ``root`` (``root``, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``).

    Raises FileNotFoundError naming the places looked at.
    """
    base = Path(root)
    candidates = [base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"]
    candidates += [base / "VOCtrainval_11-May-2012" / "VOCdevkit" / "VOC2012"]
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir():
            return candidate
    looked = ", ".join(str(c / "JPEGImages") for c in candidates)
    raise FileNotFoundError(
        f"PASCAL VOC 2012 not found under {base}: no JPEGImages folder (looked at {looked})"
    )


def find_sbd_root(root: str | Path, voc: Path | None = None) -> Path | None:
    """The SBD ``dataset`` folder (holding ``cls/``) near ``root``, or None."""
    base = Path(root)
    places = [base / "benchmark_RELEASE" / "dataset", base / "SBD" / "dataset", base / "sbd" / "dataset"]
    if voc is not None:
        places += [
            voc.parent / "benchmark_RELEASE" / "dataset",
            voc.parent.parent / "benchmark_RELEASE" / "dataset",
        ]
    for place in places:
        if (place / "cls").is_dir():
            return place
    return None


def read_id_list(path: Path) -> list[str]:
    """Sample ids of a split list: bare ids, or DeepLab-style ``/JPEGImages/<id>.jpg <mask>`` lines."""
    return [Path(name).stem for name in list_names(path)]


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class mask (H, W) of an SBD ``cls/<id>.mat`` file (``GTcls.Segmentation``); needs scipy."""
    try:
        from scipy.io import loadmat  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{path}: reading SBD .mat files needs scipy (pip install scipy), or convert them once to "
            "SegmentationClassAug PNGs (index PNGs 0..20, 255) under VOCdevkit/VOC2012/"
        ) from None
    data = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    if "GTcls" not in data:
        raise ValueError(f"{path}: no GTcls struct (is it an SBD cls/*.mat file?)")
    return np.asarray(data["GTcls"].Segmentation).astype(np.int64)


class VOCLayout:
    """Where the parts of a VOC (+ SBD) copy live; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.voc = find_voc_root(self.root)
        self.images = self.voc / "JPEGImages"
        self.masks = self.voc / "SegmentationClass"
        self.aug = self.voc / "SegmentationClassAug"
        self.lists = self.voc / "ImageSets" / "Segmentation"
        self.sbd = find_sbd_root(self.root, self.voc)

    def list_file(self, split: str) -> Path:
        return self.lists / f"{split}.txt"

    def split_ids(self, split: str) -> list[str]:
        """The ids of ``split`` (see :data:`VOC_SPLITS`); a missing list raises FileNotFoundError."""
        if split in ("train", "val", "trainval"):
            path = self.list_file(split)
            if not path.is_file():
                if (
                    split == "trainval"
                    and self.list_file("train").is_file()
                    and self.list_file("val").is_file()
                ):
                    return sorted(set(self.split_ids("train")) | set(self.split_ids("val")))
                raise FileNotFoundError(f"PASCAL VOC split list not found: {path}")
            return read_id_list(path)
        if split == "trainaug":
            return self.trainaug_ids()
        raise ValueError(f"PASCAL VOC split must be one of {VOC_SPLITS}, got {split!r}")

    def trainaug_list(self) -> Path | None:
        for path in (
            self.voc / "ImageSets" / "SegmentationAug" / "train_aug.txt",
            self.voc / "ImageSets" / "Segmentation" / "train_aug.txt",
            self.voc / "ImageSets" / "Segmentation" / "trainaug.txt",
        ):
            if path.is_file():
                return path
        return None

    def sbd_ids(self) -> list[str]:
        """Ids with SBD masks: the SegmentationClassAug PNGs, else the SBD release's train + val lists."""
        if self.aug.is_dir():
            return sorted(p.stem for p in self.aug.glob("*.png"))
        if self.sbd is not None:
            ids: set[str] = set()
            for name in ("train.txt", "val.txt"):
                if (self.sbd / name).is_file():
                    ids.update(read_id_list(self.sbd / name))
            if not ids:
                ids = {p.stem for p in (self.sbd / "cls").glob("*.mat")}
            return sorted(ids)
        return []

    def trainaug_ids(self) -> list[str]:
        """VOC train + SBD train/val - VOC val (10,582 ids on a full copy)."""
        listed = self.trainaug_list()
        if listed is not None:
            return read_id_list(listed)
        extra = self.sbd_ids()
        if not extra:
            raise FileNotFoundError(
                f"PASCAL VOC 'trainaug' needs the SBD masks: neither {self.aug} nor an SBD release "
                f"(benchmark_RELEASE/dataset/cls) was found under {self.root}. Download SegmentationClassAug "
                "(see `cct data prepare voc`)"
            )
        val = set(self.split_ids("val"))
        return sorted((set(self.split_ids("train")) | set(extra)) - val)

    def mask_path(self, name: str, labels: LabelSource) -> Path:
        """The mask file of ``name`` for a label source (``auto``: VOC, then Aug PNG, then SBD .mat)."""
        voc, aug = self.masks / f"{name}.png", self.aug / f"{name}.png"
        sbd = self.sbd / "cls" / f"{name}.mat" if self.sbd is not None else None
        if labels == "voc":
            return voc
        if labels == "aug":
            return aug
        if labels == "sbd":
            if sbd is None:
                raise FileNotFoundError(
                    f"labels='sbd' but no SBD release (benchmark_RELEASE/dataset) under {self.root}"
                )
            return sbd
        for path in (voc, aug, sbd):
            if path is not None and path.is_file():
                return path
        return aug if self.aug.is_dir() or sbd is None else sbd

    def image_path(self, name: str) -> Path:
        path = self.images / f"{name}.jpg"
        if not path.is_file() and self.sbd is not None and (self.sbd / "img" / f"{name}.jpg").is_file():
            return self.sbd / "img" / f"{name}.jpg"
        return path


class PascalVOC(SegmentationDataset):
    """PASCAL VOC 2012 (+ SBD): ``{"image": uint8 (3, H, W), "mask": int64 (H, W) in 0..20 ∪ {255}, "name"}``.

    ``root``: the folder holding ``VOCdevkit/`` (or ``VOCdevkit/`` or ``VOC2012/`` itself); ``split``:
    ``"train"`` (1,464), ``"val"`` (1,449), ``"trainval"`` or ``"trainaug"`` (10,582); ``names``: ids.
    ``resize``: VOC images vary in size (at most 500x500), so leave it None for training (random crops
    batch them) and use ``val_batch_size: 1`` or ``pad_to`` for evaluation. Missing images or masks are
    listed in one error (``missing="raise"``) or left out; an id listed twice is left out, recorded.

    Its options: ``labels``, the mask source: ``"auto"`` (default), ``"voc"``, ``"aug"`` or ``"sbd"`` (see
    the module docs); ``strict_masks``: values outside 0..20 and not 255 raise (default), False maps them
    to void; ``pad_to``: pad every sample at the bottom / right to this ``(H, W)`` (images with the
    ImageNet mean colour, masks with 255, so padding is never trained on nor scored), as DeepLab and
    CCT's loaders do: batches need one size. The shipped configs use ``pad_to: [500, 500]``; a larger
    image raises ValueError.
    """

    title = "PASCAL VOC"
    splits = VOC_SPLITS
    class_names = VOC_CLASSES
    palette = VOC_PALETTE

    def configure(
        self, *, labels: LabelSource = "auto", strict_masks: bool = True, pad_to: Sequence[int] | None = None
    ) -> None:
        if labels not in ("auto", "voc", "aug", "sbd"):
            raise ValueError(f"labels must be auto, voc, aug or sbd, got {labels!r}")
        self.labels: LabelSource = labels
        self.strict_masks = strict_masks
        self.pad_to = check_resize(pad_to)

    def find_root(self, root: Path) -> Path:
        self.layout = VOCLayout(root)  # FileNotFoundError naming the JPEGImages folders looked for
        return self.layout.root

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        layout, labels = self.layout, self.labels
        ids = layout.split_ids(str(self.split))
        items = [Item(name=i, image=layout.image_path(i), mask=layout.mask_path(i, labels)) for i in ids]
        kept, skipped = split_missing(items, f"PASCAL VOC {self.split}", self.missing)
        kept, dups = _dedupe(kept)
        return kept, skipped + dups

    def load_mask(self, path: Path) -> np.ndarray:
        return load_voc_mask(path, strict=self.strict_masks)

    def __getitem__(self, index: int) -> Sample:
        sample = super().__getitem__(index)
        return pad_sample(sample, self.pad_to) if self.pad_to is not None else sample


PAD_COLOUR: tuple[int, int, int] = (124, 116, 104)
"""The ImageNet mean colour (uint8), used for padded image pixels: 0 after normalisation."""


def pad_sample(sample: Sample, size: tuple[int, int], ignore_index: int = IGNORE_INDEX) -> Sample:
    """Pad a sample's image (mean colour) and mask (``ignore_index``) at the bottom / right to ``size``."""
    image = sample["image"]
    height, width = image.shape[-2:]
    if height > size[0] or width > size[1]:
        raise ValueError(
            f"{sample['name']}: image {height}x{width} is larger than pad_to {size[0]}x{size[1]}; raise pad_to"
        )
    if (height, width) == size:
        return sample
    padded = torch.tensor(PAD_COLOUR, dtype=image.dtype).view(3, 1, 1).repeat(1, *size)
    padded[:, :height, :width] = image
    out: Sample = {"image": padded, "name": sample["name"]}
    if "mask" in sample:
        mask = torch.full(size, ignore_index, dtype=sample["mask"].dtype)
        mask[:height, :width] = sample["mask"]
        out["mask"] = mask
    return out


def load_voc_mask(path: Path, *, strict: bool = True, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A VOC / SBD mask file (palette PNG, index PNG, RGB PNG or SBD .mat) -> int64 (H, W) in 0..20 ∪ {255}."""
    raw = read_sbd_mat(path) if path.suffix == ".mat" else read_mask_raw(path)
    if raw.ndim == 3:
        palette = [*VOC_PALETTE, VOC_VOID_COLOUR]
        mapped = map_rgb_mask(raw, palette, ignore_index)
        mapped[mapped == len(VOC_PALETTE)] = ignore_index
        return mapped
    return map_index_mask(raw, len(VOC_CLASSES), ignore_index=ignore_index, strict=strict, source=path)


def _dedupe(items: list[Item]) -> tuple[list[Item], list[SkippedEntry]]:
    seen: set[str] = set()
    kept: list[Item] = []
    dups: list[SkippedEntry] = []
    for item in items:
        if item.name in seen:
            dups.append(SkippedEntry("duplicate", item.image, f"{item.name!r} is listed twice", item.name))
            continue
        seen.add(item.name)
        kept.append(item)
    return kept, dups


def image_level_labels(
    dataset: Any, *, include_background: bool = True, min_pixels: int = 1
) -> dict[str, list[int]]:
    """Image-level labels derived from the masks: sample name -> sorted class ids present.

    For the weak-label setting (paper 3.3): the classes an image shows, void ignored. The background class
    (id 0) is listed when present unless ``include_background`` is False.
    """
    labels: dict[str, list[int]] = {}
    for index, item in enumerate(dataset.items):
        mask = dataset._load_mask(item)
        values, counts = np.unique(mask[mask != dataset.ignore_index], return_counts=True)
        present = [int(v) for v, c in zip(values, counts, strict=True) if c >= min_pixels]
        if not include_background:
            present = [v for v in present if v != 0]
        labels[dataset.names[index]] = present
    return labels


def write_image_labels(labels: dict[str, list[int]], class_names: Sequence[str], path: Path) -> Path:
    """Write labels as ``name class class ...`` lines (the format `cct cam train --labels` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([name, *(class_names[c] for c in classes)]) for name, classes in sorted(labels.items())]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
    return path
