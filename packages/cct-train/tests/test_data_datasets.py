"""Datasets: CamVid and Weizmann horses (real data, skipped when absent), FolderDataset, UnlabeledFolder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cct_train.data import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    DATASETS,
    CamVid,
    FolderDataset,
    UnlabeledFolder,
    WeizmannHorses,
    build_dataset,
)


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def _rgb(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- CamVid --------------------------------------------------------------------------------------


@pytest.mark.data
def test_camvid_val_sample(camvid_root: Path) -> None:
    ds = CamVid(camvid_root, split="val")
    assert len(ds) == 101
    assert len(ds.names) == 101
    assert ds.num_classes == 11
    assert ds.class_names == CAMVID_CLASSES
    assert ds.palette == CAMVID_PALETTE
    assert ds.ignore_index == 255
    sample = ds[0]
    assert sample["name"] == ds.names[0]
    assert sample["image"].shape == (3, 360, 480)
    assert sample["image"].dtype == torch.uint8
    mask = sample["mask"]
    assert mask.shape == (360, 480)
    assert mask.dtype == torch.int64
    values = set(mask.unique().tolist())
    assert values <= set(range(11)) | {255}
    raw = torch.from_numpy(np.array(Image.open(str(ds.items[0].mask))).astype(np.int64))
    assert torch.equal(mask == 255, raw == 11)
    assert torch.equal(mask[raw != 11], raw[raw != 11])


@pytest.mark.data
def test_camvid_names_resize_and_unlabeled(camvid_root: Path) -> None:
    full = CamVid(camvid_root, split="train")
    assert len(full) == 367
    wanted = [full.names[5], full.names[1], full.names[300]]
    ds = CamVid(camvid_root, split="train", names=wanted, resize=(90, 120))
    assert sorted(ds.names) == sorted(wanted)
    sample = ds[0]
    assert sample["image"].shape == (3, 90, 120)
    assert sample["mask"].shape == (90, 120)
    assert set(sample["mask"].unique().tolist()) <= set(range(11)) | {255}
    unlabeled = ds.without_masks()
    assert "mask" not in unlabeled[0]
    assert unlabeled.names == ds.names
    assert "mask" in ds[0]  # the original is untouched
    assert len(full.subset(wanted)) == 3
    with pytest.raises(ValueError, match="unknown sample names"):
        CamVid(camvid_root, split="train", names=["nope"])


@pytest.mark.data
def test_camvid_test_split_absent_is_clear(camvid_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        CamVid(camvid_root, split="test")


def test_camvid_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        CamVid(tmp_path / "does_not_exist")


def test_camvid_absolute_segnet_paths(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a.png", _rgb())
    mask = np.full((6, 8), 3, np.uint8)
    mask[0] = 11
    _png(tmp_path / "trainannot" / "a.png", mask)
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n")
    sample = CamVid(tmp_path, "train")[0]
    assert sample["name"] == "a"
    assert (sample["mask"][0] == 255).all()
    assert (sample["mask"][1:] == 3).all()


def test_camvid_missing_file_named(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a.png", _rgb())
    (tmp_path / "train.txt").write_text("train/a.png trainannot/a.png\n")
    with pytest.raises(FileNotFoundError, match=r"trainannot/a\.png"):
        CamVid(tmp_path, "train")


# -- Weizmann horses ------------------------------------------------------------------------------


@pytest.mark.data
def test_horses(horses_root: Path) -> None:
    train = WeizmannHorses(horses_root, "train")
    val = WeizmannHorses(horses_root, "val")
    assert len(train) == 264
    assert len(val) == 64
    assert train.names[0] == "horse001"
    assert val.names[0] == "horse265"
    assert train.num_classes == 2
    assert train.class_names == ("background", "horse")
    sample = train[0]
    image, mask = sample["image"], sample["mask"]
    assert image.shape[0] == 3
    assert image.shape[1:] == mask.shape
    assert torch.equal(image[0], image[1])
    assert torch.equal(image[0], image[2])
    assert set(mask.unique().tolist()) == {0, 1}
    small = WeizmannHorses(horses_root, "val", names=["horse300"], resize=(64, 80))[0]
    assert small["image"].shape == (3, 64, 80)
    assert small["mask"].shape == (64, 80)


# -- FolderDataset ---------------------------------------------------------------------------------


def _folder(root: Path, n: int = 3, h: int = 6, w: int = 8) -> list[np.ndarray]:
    masks = []
    for i in range(n):
        _png(root / "images" / f"s{i}.png", _rgb(h, w, i))
        mask = np.random.default_rng(10 + i).integers(0, 4, (h, w)).astype(np.uint8)
        _png(root / "masks" / f"s{i}.png", mask)
        masks.append(mask)
    return masks


def test_folder_index_masks_all_pairs(tmp_path: Path) -> None:
    masks = _folder(tmp_path)
    ds = FolderDataset(tmp_path, num_classes=4)
    assert ds.names == ["s0", "s1", "s2"]
    assert len(ds.palette) == 4
    assert ds.class_names == ("class_0", "class_1", "class_2", "class_3")
    sample = ds[1]
    assert sample["image"].shape == (3, 6, 8)
    assert sample["image"].dtype == torch.uint8
    assert torch.equal(sample["mask"], torch.from_numpy(masks[1].astype(np.int64)))
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), _rgb(6, 8, 1))


def test_folder_txt_lists(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "train.txt").write_text("s2\ns0.png\n\n")
    (tmp_path / "val.txt").write_text("images/s1.png masks/s1.png\n")
    train = FolderDataset(tmp_path, split="train", num_classes=4)
    assert train.names == ["s2", "s0"]
    assert FolderDataset(tmp_path, split="val", num_classes=4).names == ["s1"]
    assert FolderDataset(tmp_path, list_file="train.txt", num_classes=4, names=["s0"]).names == ["s0"]
    with pytest.raises(FileNotFoundError, match="test"):
        FolderDataset(tmp_path, split="test", num_classes=4)


def test_folder_csv_list_and_missing_entry(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "train.csv").write_text("image,mask\nimages/s1.png,masks/s1.png\ns2.png,\n")
    ds = FolderDataset(tmp_path, split="train", num_classes=4)
    assert ds.names == ["s1", "s2"]
    assert ds[1]["mask"].shape == (6, 8)
    (tmp_path / "bad.csv").write_text("image,mask\nimages/nope.png,masks/s1.png\n")
    with pytest.raises(FileNotFoundError, match="nope"):
        FolderDataset(tmp_path, list_file="bad.csv", num_classes=4)


def test_folder_palette_rgb_masks(tmp_path: Path) -> None:
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    ids = np.array([[0, 1, 2, 9], [2, 2, 1, 0]])
    rgb = np.zeros((2, 4, 3), np.uint8)
    for c, colour in enumerate(palette):
        rgb[ids == c] = colour
    rgb[ids == 9] = (1, 2, 3)  # not in the palette -> ignore
    _png(tmp_path / "images" / "a.jpg", _rgb(2, 4))
    _png(tmp_path / "masks" / "a.png", rgb)
    ds = FolderDataset(tmp_path, num_classes=3, palette=palette)
    expected = torch.tensor([[0, 1, 2, 255], [2, 2, 1, 0]])
    assert torch.equal(ds[0]["mask"], expected)
    assert ds.palette == palette


def test_folder_rgb_mask_without_palette_is_an_error(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", _rgb(2, 4))
    _png(tmp_path / "masks" / "a.png", _rgb(2, 4, seed=1))
    with pytest.raises(ValueError, match="palette"):
        FolderDataset(tmp_path, num_classes=3)[0]


def test_folder_bad_values_void_and_lenient(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", _rgb(2, 3))
    _png(tmp_path / "masks" / "a.png", np.array([[0, 1, 7], [255, 2, 9]], np.uint8))
    with pytest.raises(ValueError, match=r"a\.png.*\[7, 9\]"):
        FolderDataset(tmp_path, num_classes=3)[0]
    lenient = FolderDataset(tmp_path, num_classes=3, strict_masks=False)[0]["mask"]
    assert lenient.tolist() == [[0, 1, 255], [255, 2, 255]]
    void = FolderDataset(tmp_path, num_classes=3, void_values=(7, 9))[0]["mask"]
    assert void.tolist() == [[0, 1, 255], [255, 2, 255]]


def test_folder_size_mismatch_names_file(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", _rgb(6, 8))
    _png(tmp_path / "masks" / "a.png", np.zeros((6, 7), np.uint8))
    ds = FolderDataset(tmp_path, num_classes=2, resize=(6, 8))
    with pytest.raises(ValueError, match=r"masks/a\.png.*differs"):
        ds[0]


def test_folder_greyscale_resize_and_dataset_json(tmp_path: Path) -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    _png(tmp_path / "images" / "g.png", grey)
    _png(tmp_path / "masks" / "g.png", np.ones((6, 8), np.uint8))
    meta = {"num_classes": 2, "class_names": ["bg", "fg"], "palette": [[1, 2, 3], [4, 5, 6]]}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    ds = FolderDataset(tmp_path, resize=(3, 4))
    assert ds.num_classes == 2
    assert ds.class_names == ("bg", "fg")
    assert ds.palette == [(1, 2, 3), (4, 5, 6)]
    sample = ds[0]
    assert sample["image"].shape == (3, 3, 4)
    assert sample["mask"].shape == (3, 4)
    assert torch.equal(sample["image"][0], sample["image"][2])
    assert (sample["mask"] == 1).all()


def test_folder_errors(tmp_path: Path) -> None:
    _folder(tmp_path)
    with pytest.raises(ValueError, match="num_classes"):
        FolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataset(tmp_path / "nowhere", num_classes=2)
    with pytest.raises(FileNotFoundError, match="labels"):
        FolderDataset(tmp_path, num_classes=2, mask_dir="labels")


# -- UnlabeledFolder and registry ------------------------------------------------------------------


def test_unlabeled_folder(tmp_path: Path) -> None:
    _png(tmp_path / "b.png", _rgb())
    _png(tmp_path / "sub" / "a.JPG", _rgb(5, 5))
    _png(tmp_path / "c.jpg", np.zeros((6, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = UnlabeledFolder(tmp_path, resize=(4, 4))
    assert ds.names == ["b", "c", "sub/a"]
    sample = ds[2]
    assert set(sample) == {"image", "name"}
    assert sample["image"].shape == (3, 4, 4)
    listed = UnlabeledFolder([tmp_path / "b.png", tmp_path / "sub"])
    assert listed.names == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="missing"):
        UnlabeledFolder(tmp_path / "missing")


def test_registry(tmp_path: Path) -> None:
    assert set(DATASETS) == {
        "camvid",
        "cityscapes",
        "folder",
        "horses",
        "sunrgbd",
        "unlabeled",
        "synthetic",
        "voc",
    }
    _folder(tmp_path)
    ds = build_dataset("folder", root=tmp_path, num_classes=4)
    assert isinstance(ds, FolderDataset)
    assert len(ds) == 3
    with pytest.raises(ValueError, match=r"camvid.*folder.*horses"):
        build_dataset("ade20k")
