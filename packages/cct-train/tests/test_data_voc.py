"""PASCAL VOC 2012 (+ SBD) from a tiny copy in the official layout: palette PNGs, Aug PNGs, split lists."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from cct_train.data import VOC_CLASSES, VOC_PALETTE, PascalVOC, build_dataset, image_level_labels
from cct_train.data.base import MissingFilesError
from cct_train.data.voc import VOC_VOID_COLOUR, load_voc_mask, read_id_list


def test_palette_and_classes_are_vocs() -> None:
    assert len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background"
    assert VOC_CLASSES[15] == "person"
    assert VOC_PALETTE[0] == (0, 0, 0)
    assert VOC_PALETTE[1] == (128, 0, 0)  # aeroplane
    assert VOC_PALETTE[15] == (192, 128, 128)  # person
    assert VOC_PALETTE[20] == (0, 64, 128)  # tvmonitor
    assert VOC_VOID_COLOUR == (224, 224, 192)


def test_splits_masks_and_void(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    train = build_dataset("voc", root=root, split="train")
    assert train.names == bench.VOC_TRAIN
    val = PascalVOC(root / "VOCdevkit", "val")  # VOCdevkit/ itself works as the root too
    assert val.names == bench.VOC_VAL
    # trainaug = VOC train + SBD - VOC val (val ids have Aug masks too and must be left out)
    aug = PascalVOC(root, "trainaug")
    assert set(aug.names) == set(bench.VOC_TRAIN) | set(bench.SBD_ONLY)
    assert not set(aug.names) & set(bench.VOC_VAL)
    sample = train[1]
    height, width = bench.VOC_SIZES[1]
    assert sample["image"].shape == (3, height, width)
    mask = sample["mask"].numpy()
    expected = bench.voc_mask(1, height, width).astype(np.int64)
    np.testing.assert_array_equal(mask, expected)  # palette indices are the class ids; 255 stays void
    assert set(np.unique(mask)) == {0, 2, 255}
    # SBD-only ids read SegmentationClassAug; VOC ids SegmentationClass
    by_name = {item.name: item for item in aug.items}
    assert by_name["2008_000002"].mask is not None
    assert by_name["2008_000002"].mask.parent.name == "SegmentationClassAug"
    assert by_name["2007_000032"].mask is not None
    assert by_name["2007_000032"].mask.parent.name == "SegmentationClass"


def test_pad_to_batches_with_void(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    train = PascalVOC(root, "train", pad_to=(26, 26))
    sample = train[0]
    height, width = bench.VOC_SIZES[0]
    assert sample["image"].shape == (3, 26, 26)
    assert sample["mask"].shape == (26, 26)
    assert (sample["mask"][height:, :] == 255).all()
    assert (sample["mask"][:, width:] == 255).all()
    assert sample["image"][:, height:, :].flatten(1).unique(dim=1).shape[1] == 1  # one pad colour
    with pytest.raises(ValueError, match="pad_to"):
        PascalVOC(root, "train", pad_to=(10, 10))[0]


def test_trainaug_list_file_and_deeplab_lines(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "SegmentationAug"
    lists.mkdir(parents=True)
    (lists / "train_aug.txt").write_text(
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
        "/JPEGImages/2008_000003.jpg /SegmentationClassAug/2008_000003.png\n"
    )
    assert PascalVOC(root, "trainaug").names == ["2007_000032", "2008_000003"]
    assert read_id_list(lists / "train_aug.txt") == ["2007_000032", "2008_000003"]


def test_missing_files_named_and_skipped(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    gone = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png"
    gone.unlink()
    # auto falls back to the Aug mask; forcing VOC masks names the missing file
    assert "2007_000039" in PascalVOC(root, "train").names
    with pytest.raises(MissingFilesError, match="2007_000039"):
        PascalVOC(root, "train", labels="voc")
    kept = PascalVOC(root, "train", labels="voc", missing="skip")
    assert "2007_000039" not in kept.names
    assert len(kept.skipped_entries) == 1
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        PascalVOC(tmp_path / "nowhere", "train")


def test_trainaug_without_sbd_says_what_to_fetch(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path, aug=False)
    assert len(PascalVOC(root, "train")) == len(bench.VOC_TRAIN)
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug"):
        PascalVOC(root, "trainaug")


def test_rgb_and_bad_masks(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 255], [15, 20, 0]], dtype=np.uint8)
    colours = np.array([*VOC_PALETTE, *([(0, 0, 0)] * 234), VOC_VOID_COLOUR], dtype=np.uint8)
    Image.fromarray(colours[mask]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_voc_mask(tmp_path / "rgb.png"), mask)
    Image.fromarray(np.array([[0, 21]], dtype=np.uint8), mode="L").save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="21"):
        load_voc_mask(tmp_path / "bad.png")
    assert load_voc_mask(tmp_path / "bad.png", strict=False).tolist() == [[0, 255]]


def test_image_level_labels_from_masks(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    train = PascalVOC(root, "train")
    labels = image_level_labels(train)
    assert labels["2007_000032"] == [0, 1]  # background + class 1; void not a class
    assert image_level_labels(train, include_background=False)["2007_000039"] == [2]


def test_trainaug_from_the_sbd_release_mat_files(tmp_path: Path, bench: ModuleType) -> None:
    """VOC without SegmentationClassAug + the SBD release (benchmark_RELEASE/dataset/cls/*.mat, MATLAB
    structs GTcls.Segmentation as scipy writes them): SBD-only ids take their masks from the .mat files."""
    scipy_io = pytest.importorskip("scipy.io")
    root = bench.make_voc(tmp_path, aug=False)
    sbd = root / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    expected = {}
    for i, name in enumerate(bench.SBD_ONLY):
        width, height = Image.open(root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{name}.jpg").size
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[2 + i : 12 + i, 3:15] = 1 + i  # class ids 1..4, a different box per image
        mask[0, :] = 255  # SBD has no void border, but 255 must still read as void
        scipy_io.savemat(
            sbd / "cls" / f"{name}.mat",
            {
                "GTcls": {
                    "Segmentation": mask,
                    "Boundaries": np.zeros(1),
                    "CategoriesPresent": np.array([1 + i]),
                }
            },
        )
        expected[name] = mask
    (sbd / "train.txt").write_text("\n".join(bench.SBD_ONLY[:3]) + "\n")
    (sbd / "val.txt").write_text(bench.SBD_ONLY[3] + "\n")
    data = PascalVOC(root, split="trainaug")
    assert set(bench.SBD_ONLY) <= set(data.names)
    assert not set(bench.VOC_VAL) & set(data.names)  # VOC val never enters trainaug
    for name, mask in expected.items():
        got = data[data.names.index(name)]["mask"].numpy()
        assert np.array_equal(got, mask.astype(np.int64)), name
    scipy_io.savemat(tmp_path / "other.mat", {"x": np.zeros(2)})
    with pytest.raises(ValueError, match="no GTcls"):
        load_voc_mask(tmp_path / "other.mat")
