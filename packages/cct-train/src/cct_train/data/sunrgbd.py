"""SUN RGB-D, 2D semantic segmentation (RGB only), with the 37-class labels or the 13-class version.

Layout: the SUN RGB-D segmentation release as distributed with its labels extracted from
``SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat`` (the ``sunrgbd-meta-data`` archives of A. Handa)::

    root/SUNRGBD-train_images/img-000001.jpg ... img-005285.jpg     5,285 training images
    root/SUNRGBD-test_images/img-000001.jpg  ... img-005050.jpg     5,050 test images
    root/sunrgbd_train_test_labels/img-000001.png ... img-010335.png
        37-class labels, 8-bit PNGs: 0 = unlabeled (void), 1..37 = the classes below. The FIRST 5,050
        files are the test images' labels, the training labels are files 5,051..10,335
        (training image ``img-%06d`` i  <->  label ``img-%06d`` 5050 + i).

(``train_images`` / ``test_images`` / ``labels`` are accepted as folder names too.) Splits: ``"train"``
(5,285) and ``"test"`` (5,050; ``"val"`` is an alias: the paper evaluates on it). Sample names are
``img-NNNNNN`` of the image.

Label spaces (``classes=37`` default, or ``classes=13``):

- 37: the SUN RGB-D / NYUv2-40 classes 1..37 (wall ... bag) -> ids 0..36; 0 -> 255.
- 13: the standard NYU 40 -> 13 class mapping of Couprie et al. 2013 / Handa et al. (SceneNet), as in
  ``nyuv2-meta-data/class13Mapping``: bed, books, ceiling, chair, floor, furniture, objects, picture,
  sofa, table, tv, wall, window -> ids 0..12 (the 37 SUN RGB-D classes are NYU40 classes 1..37; see
  :data:`SUNRGBD_37_TO_13`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cct_train.data.base import (
    IGNORE_INDEX,
    Item,
    SegmentationDataset,
    SkippedEntry,
    default_palette,
    split_missing,
)

SUNRGBD_37_CLASSES: tuple[str, ...] = (
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor mat",
    "clothes",
    "ceiling",
    "books",
    "refrigerator",
    "television",
    "paper",
    "towel",
    "shower curtain",
    "box",
    "whiteboard",
    "person",
    "night stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
)
"""The 37 SUN RGB-D classes; label value v in 1..37 on disk is class id v - 1."""

SUNRGBD_13_CLASSES: tuple[str, ...] = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
"""The 13 classes of the NYU / SUN RGB-D 13-class version, in id order."""

_NYU40_TO_13 = (
    0,
    12,
    5,
    6,
    1,
    4,
    9,
    10,
    12,
    13,
    6,
    8,
    6,
    13,
    10,
    6,
    13,
    6,
    7,
    7,
    5,
    7,
    3,
    2,
    6,
    11,
    7,
    7,
    7,
    7,
    7,
    7,
    6,
    7,
    7,
    7,
    7,
    7,
)
# NYU40 label (0 = unlabeled, 1..37 as in SUNRGBD_37_CLASSES) -> 13-class label (1..13, 0 = unlabeled).

SUNRGBD_37_TO_13: dict[str, str] = {
    SUNRGBD_37_CLASSES[i - 1]: SUNRGBD_13_CLASSES[_NYU40_TO_13[i] - 1] for i in range(1, 38)
}
"""Each 37-class name -> its 13-class name (door -> wall, cabinet -> furniture, pillow -> objects ...)."""

SUNRGBD_SPLITS = ("train", "test", "val")
SUNRGBD_TEST_SIZE = 5050
"""Number of test images: training label files are numbered after them."""

IMAGE_DIRS = {
    "train": ("SUNRGBD-train_images", "train_images"),
    "test": ("SUNRGBD-test_images", "test_images"),
}
LABEL_DIRS = ("sunrgbd_train_test_labels", "labels")
_NUMBER = re.compile(r"img-(\d+)$")


def _lut(classes: int) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for value in range(1, 38):
        lut[value] = value - 1 if classes == 37 else _NYU40_TO_13[value] - 1
    return lut


def map_sunrgbd_labels(raw: np.ndarray, classes: int = 37) -> np.ndarray:
    """On-disk labels (0 = void, 1..37) -> class ids of the 37- or 13-class version ∪ {255}, int64.

    Values above 37 are void too.
    """
    if classes not in (13, 37):
        raise ValueError(f"classes must be 13 or 37, got {classes}")
    return _lut(classes)[np.asarray(raw).astype(np.int64).clip(0, 255)]


def _find(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"SUN RGB-D {what}: none of {', '.join(str(root / n) for n in names)} exists")


class SUNRGBD(SegmentationDataset):
    """SUN RGB-D: ``{"image": uint8 (3, H, W), "mask": int64 in 0..C-1 ∪ {255}, "name"}`` with C = 37 or 13.

    Image sizes vary (mostly 530x730 or 531x681 ...): pass ``resize`` (the paper uses 480x640) or batch
    through random crops. ``split``: ``"train"`` or ``"test"`` (``"val"`` reads the test split, the one the
    paper evaluates on). Its option ``classes``: 37 (default) or 13.
    """

    title = "SUN RGB-D"
    splits = SUNRGBD_SPLITS

    def configure(self, *, classes: int = 37) -> None:
        if classes not in (13, 37):
            raise ValueError(f"SUN RGB-D classes must be 13 or 37, got {classes}")
        self.classes = classes
        self.class_names = SUNRGBD_37_CLASSES if classes == 37 else SUNRGBD_13_CLASSES
        self.palette = default_palette(len(self.class_names) + 1)[1:]
        self.split = "test" if self.split == "val" else self.split  # val: the test split, as in the paper

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        images = _find(self.root, IMAGE_DIRS[str(self.split)], f"{self.split} images")
        labels = _find(self.root, LABEL_DIRS, "labels")
        offset = SUNRGBD_TEST_SIZE if self.split == "train" else 0
        items: list[Item] = []
        for image in sorted(images.glob("img-*.jpg")):
            match = _NUMBER.match(image.stem)
            if match is None:
                continue
            label = labels / f"img-{int(match.group(1)) + offset:06d}.png"
            items.append(Item(name=image.stem, image=image, mask=label))
        if not items:
            raise FileNotFoundError(f"SUN RGB-D {self.split}: no img-NNNNNN.jpg images in {images}")
        return split_missing(items, f"SUN RGB-D {self.split} labels", self.missing)

    def load_mask(self, path: Path) -> np.ndarray:
        return map_sunrgbd_labels(self.index_values(path), self.classes)
