"""Cityscapes (gtFine labelIds -> 19 train ids) and SUN RGB-D (37 / 13 classes) from tiny official layouts."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cct_train.data import (
    CITYSCAPES_CLASSES,
    LABEL_ID_TO_TRAIN_ID,
    SUNRGBD,
    SUNRGBD_13_CLASSES,
    SUNRGBD_37_CLASSES,
    SUNRGBD_37_TO_13,
    Cityscapes,
    build_dataset,
)
from cct_train.data.base import MissingFilesError
from cct_train.data.cityscapes import label_ids_to_train_ids
from cct_train.data.sunrgbd import map_sunrgbd_labels


def test_cityscapes_train_id_table() -> None:
    assert len(CITYSCAPES_CLASSES) == 19
    assert sorted(LABEL_ID_TO_TRAIN_ID.values()) == list(range(19))
    ids = np.arange(34)
    train = label_ids_to_train_ids(ids)
    assert train[7] == 0
    assert train[8] == 1
    assert train[11] == 2
    assert train[23] == 10
    assert train[24] == 11
    assert train[26] == 13
    assert train[31] == 16
    assert train[33] == 18
    for void in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30):
        assert train[void] == 255
    assert label_ids_to_train_ids(np.array([255])).tolist() == [255]  # license plate (-1) as stored


def test_cityscapes_official_layout(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_cityscapes(tmp_path)
    train = build_dataset("cityscapes", root=root, split="train")
    assert train.names == [name for _, name in bench.CITYSCAPES["train"]]
    val = Cityscapes(root, "val")
    assert len(val) == 2
    assert val.num_classes == 19
    sample = train[0]
    assert sample["image"].shape == (3, 16, 32)
    mask = sample["mask"].numpy()
    assert mask[0, 0] == 10  # sky 23
    assert mask[5, -1] == 0
    assert mask[5, 0] == 1
    assert (mask[8:10] == 255).all()  # parking 9: void
    assert (mask[10:12] == 13).all()
    assert (mask[12:14] == 18).all()
    assert (mask[14:] == 255).all()  # ego vehicle
    assert Cityscapes(root, "train", names=["bochum_000000_000313"]).names == ["bochum_000000_000313"]


def test_cityscapes_missing_mask_named(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_cityscapes(tmp_path)
    gone = root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png"
    gone.unlink()
    with pytest.raises(MissingFilesError, match=r"lindau_000000_000019_gtFine_labelIds\.png"):
        Cityscapes(root, "val")
    assert Cityscapes(root, "val", missing="skip").names == ["frankfurt_000000_000294"]
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        Cityscapes(root, "test")


def test_sunrgbd_13_class_mapping() -> None:
    assert len(SUNRGBD_37_CLASSES) == 37
    assert len(SUNRGBD_13_CLASSES) == 13
    assert SUNRGBD_37_TO_13["door"] == "wall"
    assert SUNRGBD_37_TO_13["cabinet"] == "furniture"
    assert SUNRGBD_37_TO_13["television"] == "tv"
    assert SUNRGBD_37_TO_13["blinds"] == "window"
    assert SUNRGBD_37_TO_13["floor mat"] == "floor"
    assert SUNRGBD_37_TO_13["desk"] == "table"
    assert SUNRGBD_37_TO_13["pillow"] == "objects"
    assert SUNRGBD_37_TO_13["books"] == "books"
    assert set(SUNRGBD_37_TO_13.values()) == set(SUNRGBD_13_CLASSES)  # every 13-class id is reachable
    raw = np.array([0, 1, 8, 25, 37, 38])
    assert map_sunrgbd_labels(raw, 37).tolist() == [255, 0, 7, 24, 36, 255]
    assert map_sunrgbd_labels(raw, 13).tolist() == [255, 11, 11, 10, 6, 255]


@pytest.mark.parametrize("classes", [37, 13])
def test_sunrgbd_layout_and_label_offset(tmp_path: Path, bench: ModuleType, classes: int) -> None:
    root = bench.make_sunrgbd(tmp_path)
    train = build_dataset("sunrgbd", root=root, split="train", classes=classes)
    assert train.names == ["img-000001", "img-000002", "img-000003"]
    assert train.num_classes == classes
    # training image i reads label file 5050 + i; the test set the first 5,050
    assert [item.mask.name for item in train.items if item.mask] == [
        "img-005051.png",
        "img-005052.png",
        "img-005053.png",
    ]
    test = SUNRGBD(root, "val", classes=classes)  # val: the test split
    assert test.items[0].mask is not None
    assert test.items[0].mask.name == "img-000001.png"
    mask = train[0]["mask"].numpy()
    expected = map_sunrgbd_labels(bench.sunrgbd_labels(18, 24), classes)
    np.testing.assert_array_equal(mask, expected)
    assert (mask[:3] == 255).all()
    assert mask[3, 0] == (0 if classes == 37 else SUNRGBD_13_CLASSES.index("wall"))


def test_sunrgbd_missing_label_named(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_sunrgbd(tmp_path)
    (root / "sunrgbd_train_test_labels" / "img-005052.png").unlink()
    with pytest.raises(MissingFilesError, match=r"img-005052\.png"):
        SUNRGBD(root, "train")
