"""Procedural demo scenes: determinism, layout, loading through FolderDataset / SyntheticScenes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cct_train.data import (
    SYNTHETIC_CLASSES,
    FolderDataset,
    SyntheticScenes,
    build_dataset,
    generate_synthetic_dataset,
    render_scene,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_determinism(tmp_path: Path) -> None:
    a = generate_synthetic_dataset(tmp_path / "a", n_train=5, n_val=2, size=(32, 48), seed=4)
    b = generate_synthetic_dataset(tmp_path / "b", n_train=5, n_val=2, size=(32, 48), seed=4)
    c = generate_synthetic_dataset(tmp_path / "c", n_train=5, n_val=2, size=(32, 48), seed=5)
    files = _files(a)
    assert files == _files(b)
    assert files["images/train_0000.png"] != _files(c)["images/train_0000.png"]
    assert (a / "train.txt").read_text().split() == [f"train_{i:04d}" for i in range(5)]
    assert (a / "val.txt").read_text().split() == ["val_0000", "val_0001"]
    assert len(list((a / "images").glob("*.png"))) == 7
    assert len(list((a / "masks").glob("*.png"))) == 7
    meta = json.loads((a / "dataset.json").read_text())
    assert meta["num_classes"] == 6
    assert meta["class_names"] == list(SYNTHETIC_CLASSES)
    assert len(meta["palette"]) == 6
    assert meta["ignore_index"] == 255
    assert meta["size"] == [32, 48]
    # image i does not depend on how many images are generated
    d = generate_synthetic_dataset(tmp_path / "d", n_train=2, n_val=0, size=(32, 48), seed=4)
    assert _files(d)["images/train_0001.png"] == files["images/train_0001.png"]


def test_loads_as_folder_dataset(tmp_path: Path) -> None:
    root = generate_synthetic_dataset(tmp_path, n_train=4, n_val=2, size=(40, 56), seed=0, num_classes=5)
    train = FolderDataset(root, split="train")
    assert train.num_classes == 5
    assert len(train) == 4
    assert train.class_names == SYNTHETIC_CLASSES[:5]
    sample = train[0]
    assert sample["image"].shape == (3, 40, 56)
    assert sample["mask"].shape == (40, 56)
    assert set(sample["mask"].unique().tolist()) <= set(range(5))
    val = SyntheticScenes(root, split="val")
    assert val.names == ["val_0000", "val_0001"]
    assert val.palette == train.palette
    assert len(build_dataset("synthetic", root=root, split="train")) == 4
    with pytest.raises(FileNotFoundError, match="generate_synthetic_dataset"):
        SyntheticScenes(tmp_path / "missing")


def test_scene_content() -> None:
    rng = np.random.default_rng(0)
    colours: list[np.ndarray] = []
    seen: set[int] = set()
    for _ in range(12):
        image, mask = render_scene(rng, (96, 128), 6)
        assert image.shape == (96, 128, 3)
        assert image.dtype == np.uint8
        assert mask.shape == (96, 128)
        seen |= set(np.unique(mask).tolist())
        if (mask == 3).sum() > 20:
            colours.append(image[mask == 3].mean(0))
    assert seen == set(range(6))
    # circles are not one colour: their mean colour varies a lot from object to object
    assert len(colours) >= 3
    assert np.stack(colours).std(0).mean() > 25
    with pytest.raises(ValueError, match="classes"):
        render_scene(rng, (32, 32), 7)


def test_generation_is_fast() -> None:
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(40):
        render_scene(rng, (96, 128), 6)
    assert time.perf_counter() - start < 4.0
