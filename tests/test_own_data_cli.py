"""Your own folder of images of any size, through the real `cct` entry point (issue 41, item 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

MIXED = [(37, 50), (64, 48), (40, 40), (29, 71), (52, 33), (45, 45), (30, 61), (58, 40)]


def _photos(root: Path, sizes: list[tuple[int, int]] = MIXED) -> Path:
    """images/*.jpg + masks/*.png (3 classes) of mixed sizes, and train.txt / val.txt."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"p{index}.jpg"
        )
        Image.fromarray(rng.integers(0, 3, (h, w), dtype=np.uint8)).save(root / "masks" / f"p{index}.png")
    names = [f"p{i}" for i in range(len(sizes))]
    (root / "train.txt").write_text("\n".join(names[:-2]) + "\n")
    (root / "val.txt").write_text("\n".join(names[-2:]) + "\n")
    return root


def _config(path: Path, root: Path, output: Path, **data: Any) -> Path:
    raw = {
        "experiment": {"name": "photos", "output_dir": str(output)},
        "model": {"encoder": "timm:resnet18", "psp_channels": 16, "perturbations": {"feature_noise": 1}},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "crop_size": [32, 32],
            "split": {"n_labeled": 4},
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
            **data,
        },
        "train": {
            "iterations": 2,
            "eval_every": 2,
            "checkpoint_every": 0,
            "log_every": 1,
            "trackers": ["csv"],
        },
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_mixed_size_folder_trains_and_validates(tmp_path: Path, cct: Callable[..., Any]) -> None:
    cfg = _config(tmp_path / "cfg.yaml", _photos(tmp_path / "photos"), tmp_path / "run", num_classes=3)
    proc = cct("train", "-c", str(cfg))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert "mIoU" in output
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_missing_class_count_names_the_config_key(
    tmp_path: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    cfg = _config(tmp_path / "cfg.yaml", _photos(tmp_path / "photos"), tmp_path / "run")
    fails_cleanly(cct("train", "-c", str(cfg)), "data.num_classes is not set", "--set data.num_classes=")


@pytest.mark.data
def test_weizmann_horses_as_a_plain_folder(
    horses_root: Path, tmp_path: Path, cct: Callable[..., Any]
) -> None:
    """The issue's case: the horses' photographs (all of different sizes) as images/ + masks/, crop 96x96."""
    root = tmp_path / "horses"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = [f"horse{n:03d}" for n in range(1, 9)]
    sizes = set()
    for name in names:
        with Image.open(horses_root / "gray" / f"{name}.jpg") as image:
            image.convert("RGB").save(root / "images" / f"{name}.jpg")
            sizes.add(image.size)
        with Image.open(horses_root / "figure_ground" / f"{name}.jpg") as mask:
            binary = (np.asarray(mask.convert("L")) >= 128).astype(np.uint8)
        Image.fromarray(binary).save(root / "masks" / f"{name}.png")
    assert len(sizes) > 1  # the point of the test
    (root / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "val.txt").write_text("\n".join(names[6:]) + "\n")
    cfg = _config(tmp_path / "cfg.yaml", root, tmp_path / "run", num_classes=2, crop_size=[96, 96])
    proc = cct("train", "-c", str(cfg))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert "mIoU" in output
