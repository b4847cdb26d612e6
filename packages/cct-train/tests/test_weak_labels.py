"""Weak labels on the cct-train side: image-level label files, the pseudo-label wrapper, options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cct_train.data import UnlabeledFolder
from cct_train.data.pseudo_label_files import WithPseudoLabels
from cct_train.weak import labels_tensor, parse_background_index, read_image_labels

CLASSES = ["background", "horse", "person"]


def _png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode=mode).save(path)


def _images(root: Path, names: list[str], size: tuple[int, int] = (6, 8)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        _png(root / f"{name}.png", rng.integers(0, 256, (*size, 3)), mode="RGB")


def test_csv_labels_by_name_and_index(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        'name,labels\nimg1,horse\n# a comment\nimg2,"horse person"\nimg3,HORSE;2\nimg4,\nimg5,1 1\n'
    )
    labels = read_image_labels(path, CLASSES)
    assert labels == {"img1": [1], "img2": [1, 2], "img3": [1, 2], "img4": [], "img5": [1]}
    table = labels_tensor(["img2", "img4"], labels, 3)
    assert table.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_text_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("sub/img1 horse person\n\nimg2 0\nimg3\n")
    assert read_image_labels(path, CLASSES) == {"sub/img1": [1, 2], "img2": [0], "img3": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,labels\nimg1,horse\nimg2,hrose\n", "line 3: unknown class 'hrose'"),
        ("img1,7\n", "line 1: class index 7 is outside 0..2"),
        ("img1,horse\nimg1,person\n", "line 2: image 'img1' is listed twice"),
        ("# nothing\n", "no image-level labels"),
    ],
)
def test_bad_labels_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_image_labels(path, CLASSES)
    assert str(path) in str(info.value)


def test_missing_labels_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_image_labels(tmp_path / "nope.csv", CLASSES)


def test_background_index_option() -> None:
    assert parse_background_index("0", 3) == 0
    assert parse_background_index("none", 3) is None
    assert parse_background_index(None, 3) is None
    assert parse_background_index(2, 3) == 2
    with pytest.raises(ValueError, match="outside"):
        parse_background_index("3", 3)
    with pytest.raises(ValueError, match="integer or 'none'"):
        parse_background_index("bg", 3)


def test_pseudo_label_wrapper_reads_and_resizes(tmp_path: Path) -> None:
    names = ["a", "sub/b"]
    _images(tmp_path / "images", names)
    pseudo = np.full((6, 8), 255, dtype=np.uint8)
    pseudo[:3] = 1
    pseudo[3:, :4] = 0
    for name in names:
        _png(tmp_path / "pseudo" / f"{name}.png", pseudo)
    base = UnlabeledFolder(tmp_path / "images")
    ds = WithPseudoLabels(base, tmp_path / "pseudo", num_classes=2)
    assert len(ds) == 2
    assert ds.names == ["a", "sub/b"]
    sample = ds[1]
    assert sample["name"] == "sub/b"
    assert sample["mask"].dtype == torch.int64
    assert torch.equal(sample["mask"], torch.from_numpy(pseudo.astype(np.int64)))

    # resized like the images (nearest: values stay in {0, 1, 255})
    resized = WithPseudoLabels(UnlabeledFolder(tmp_path / "images", resize=(12, 16)), tmp_path / "pseudo")
    sample = resized[0]
    assert tuple(sample["image"].shape) == (3, 12, 16)
    assert tuple(sample["mask"].shape) == (12, 16)
    assert set(sample["mask"].unique().tolist()) == {0, 1, 255}


def test_pseudo_label_wrapper_missing_and_bad_files(tmp_path: Path) -> None:
    _images(tmp_path / "images", ["a", "b"])
    _png(tmp_path / "pseudo" / "a.png", np.zeros((6, 8)))
    base = UnlabeledFolder(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 PNG\(s\) missing.*b\.png"):
        WithPseudoLabels(base, tmp_path / "pseudo")
    with pytest.raises(FileNotFoundError, match="directory not found"):
        WithPseudoLabels(base, tmp_path / "nowhere")

    _png(tmp_path / "pseudo" / "b.png", np.full((6, 8), 7))
    ds = WithPseudoLabels(base, tmp_path / "pseudo", num_classes=2)
    with pytest.raises(ValueError, match=r"b\.png: values \[7\]"):
        ds[1]
    _png(tmp_path / "pseudo" / "b.png", np.zeros((5, 8)))
    with pytest.raises(ValueError, match="differs from its image"):
        ds[1]
