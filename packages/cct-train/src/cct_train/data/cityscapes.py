"""Cityscapes, fine annotations, 19 evaluation classes (train ids), in the official layout.

::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

(``<seq>`` and ``<frame>`` are 6-digit numbers, e.g. ``aachen_000000_000019``). Masks are the
``*_gtFine_labelIds.png`` 8-bit maps of the 34 label ids, mapped here to the 19 train ids of the official
``cityscapesscripts`` label table; every other id (unlabeled, ego vehicle, rectification border, out of
roi, static, dynamic, ground, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer,
license plate) becomes 255. ``labels="labelTrainIds"`` reads ``*_gtFine_labelTrainIds.png`` (written by
``cityscapesscripts/preparation/createTrainIdLabelImgs.py``) as they are instead.

Sample names are ``<city>_<seq>_<frame>``. Splits: train 2,975, val 500, test 1,525 (test masks carry no
labels). Images are 1024x2048: train on 512x1024 crops and evaluate with a sliding window
(``cct eval --window 512x1024 --stride 341x682``) or at full size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from cct_train.data.base import (
    IGNORE_INDEX,
    Item,
    SegmentationDataset,
    SkippedEntry,
    require_dir,
    split_missing,
)

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
"""The 19 Cityscapes evaluation classes, in train-id order."""

CITYSCAPES_PALETTE: list[tuple[int, int, int]] = [
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]
"""The official Cityscapes colour of each of the 19 classes."""

LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
"""Cityscapes label id -> train id for the 19 evaluated classes; every other id is void (255)."""

CITYSCAPES_SPLITS = ("train", "val", "test")

_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _label_id, _train_id in LABEL_ID_TO_TRAIN_ID.items():
    _LUT[_label_id] = _train_id


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a ``*_labelIds`` array (values 0..255) to train ids 0..18 ∪ {255}, int64."""
    values = np.asarray(label_ids)
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise ValueError("Cityscapes label ids must lie in 0..255")
    return _LUT[values.astype(np.int64)]


class Cityscapes(SegmentationDataset):
    """Cityscapes (gtFine): ``{"image": uint8 (3, 1024, 2048), "mask": int64 in 0..18 ∪ {255}, "name"}``.

    ``root`` holds ``leftImg8bit/`` and ``gtFine/``; ``split`` is ``"train"``, ``"val"`` or ``"test"``;
    ``names`` are ``<city>_<seq>_<frame>``. Its option ``labels``: ``"labelIds"`` (default; mapped to
    train ids) or ``"labelTrainIds"`` (already mapped). An image without its mask is an error listing all
    of them, or left out with ``missing="skip"``.
    """

    title = "Cityscapes"
    splits = CITYSCAPES_SPLITS
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def configure(self, *, labels: Literal["labelIds", "labelTrainIds"] = "labelIds") -> None:
        if labels not in ("labelIds", "labelTrainIds"):
            raise ValueError(f"labels must be 'labelIds' or 'labelTrainIds', got {labels!r}")
        self.labels = labels

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        images = require_dir(self.root / "leftImg8bit" / str(self.split), "Cityscapes images")
        masks = self.root / "gtFine" / str(self.split)
        items: list[Item] = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            name = image.name[: -len("_leftImg8bit.png")]
            mask = masks / image.parent.name / f"{name}_gtFine_{self.labels}.png"
            items.append(Item(name=name, image=image, mask=mask))
        if not items:
            raise FileNotFoundError(
                f"Cityscapes {self.split}: no <city>/*_leftImg8bit.png images under {images}"
            )
        return split_missing(items, f"Cityscapes {self.split} masks", self.missing)

    def load_mask(self, path: Path) -> np.ndarray:
        if self.labels == "labelTrainIds":
            return super().load_mask(path)  # already train ids
        return label_ids_to_train_ids(self.index_values(path))
