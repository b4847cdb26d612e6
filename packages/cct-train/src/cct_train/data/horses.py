"""The Weizmann horses (figure/ground): 2 classes, greyscale photographs, JPEG masks thresholded at 128.

::

    root/gray/horseNNN.jpg            greyscale photograph (replicated to RGB)
    root/figure_ground/horseNNN.jpg   mask: >= 128 -> 1 (horse), else 0 (background)

Fixed split by number: horse001..horse264 train, horse265..horse328 val.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cct_train.data.base import (
    IGNORE_INDEX,
    Item,
    MissingPolicy,
    SegmentationDataset,
    check_missing_policy,
    read_mask_raw,
    require_dir,
    select_items,
    split_missing,
)

HORSES_CLASSES: tuple[str, ...] = ("background", "horse")
HORSES_PALETTE: list[tuple[int, int, int]] = [(0, 0, 0), (230, 140, 40)]
HORSES_TRAIN_LAST = 264
"""Images numbered up to this one are the training split; the rest is validation."""
HORSES_THRESHOLD = 128

_NUMBER = re.compile(r"(\d+)$")


class WeizmannHorses(SegmentationDataset):
    """Weizmann horses: samples ``{"image": uint8 (3, H, W), "mask": int64 (H, W) in {0, 1}, "name"}``.

    Image sizes vary: pass ``resize=(H, W)`` to batch them. ``split`` is ``"train"`` (001-264),
    ``"val"`` (265-328) or ``"all"``. Missing masks raise a
    :class:`~cct_train.data.base.MissingFilesError` listing all of them; ``missing="skip"`` leaves those
    images out (recorded in ``skipped_entries``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        names: Sequence[str] | None = None,
        resize: Sequence[int] | None = None,
        missing: MissingPolicy = "raise",
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"WeizmannHorses split must be 'train', 'val' or 'all', got {split!r}")
        self.root = require_dir(Path(root), "Weizmann horses root")
        self.split = split
        gray = require_dir(self.root / "gray", "Weizmann horses images")
        masks = require_dir(self.root / "figure_ground", "Weizmann horses masks")
        items: list[Item] = []
        for image in sorted(gray.glob("*.jpg")):
            match = _NUMBER.search(image.stem)
            number = int(match.group(1)) if match else 0
            in_train = number <= HORSES_TRAIN_LAST
            if split == "all" or (split == "train") == in_train:
                items.append(Item(name=image.stem, image=image, mask=masks / image.name))
        if not items:
            raise FileNotFoundError(f"Weizmann horses: no images for split {split!r} in {gray}")
        items, skipped = split_missing(items, "Weizmann horses masks", check_missing_policy(missing))
        super().__init__(
            select_items(items, names, f"WeizmannHorses {split}"),
            num_classes=2,
            class_names=HORSES_CLASSES,
            palette=HORSES_PALETTE,
            ignore_index=IGNORE_INDEX,
            resize=resize,
        )
        self.skipped_entries = tuple(skipped)

    def _load_mask(self, item: Item) -> np.ndarray:
        assert item.mask is not None
        raw = read_mask_raw(item.mask)
        if raw.ndim == 3:
            raw = raw.mean(axis=2)
        return (raw >= HORSES_THRESHOLD).astype(np.int64)
