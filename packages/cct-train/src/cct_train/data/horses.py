"""The Weizmann horses (figure/ground): 2 classes, greyscale photographs, JPEG masks thresholded at 128.

::

    root/gray/horseNNN.jpg            greyscale photograph (replicated to RGB)
    root/figure_ground/horseNNN.jpg   mask: >= 128 -> 1 (horse), else 0 (background)

Fixed split by number: horse001..horse264 train, horse265..horse328 val.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cct_train.data.base import (
    Item,
    SegmentationDataset,
    SkippedEntry,
    read_mask_raw,
    require_dir,
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
    ``"val"`` (265-328) or ``"all"``. Images without their mask raise a
    :class:`~cct_train.data.base.MissingFilesError` listing all of them; ``missing="skip"`` leaves them out.
    """

    title = "Weizmann horses"
    splits = ("train", "val", "all")
    class_names = HORSES_CLASSES
    palette = HORSES_PALETTE

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        gray = require_dir(self.root / "gray", "Weizmann horses images")
        masks = require_dir(self.root / "figure_ground", "Weizmann horses masks")
        items: list[Item] = []
        for image in sorted(gray.glob("*.jpg")):
            match = _NUMBER.search(image.stem)
            number = int(match.group(1)) if match else 0
            in_train = number <= HORSES_TRAIN_LAST
            if self.split == "all" or (self.split == "train") == in_train:
                items.append(Item(name=image.stem, image=image, mask=masks / image.name))
        if not items:
            raise FileNotFoundError(f"Weizmann horses: no images for split {self.split!r} in {gray}")
        return split_missing(items, "Weizmann horses masks", self.missing)

    def load_mask(self, path: Path) -> np.ndarray:
        """A JPEG mask (greyscale, or RGB averaged) thresholded at :data:`HORSES_THRESHOLD`: 1 horse, 0 not."""
        raw = read_mask_raw(path)
        if raw.ndim == 3:
            raw = raw.mean(axis=2)
        return (raw >= HORSES_THRESHOLD).astype(np.int64)
