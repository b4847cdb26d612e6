"""End-to-end weak labels (paper 3.3) on a few Weizmann horses at 64x64 (CPU, image labels from the masks).

`cct cam train` -> `cct pseudo-labels` (with the CRF in 2 worker processes, and with --no-crf) -> a few CCT
steps with data.pseudo_labels, where the auxiliary decoders get a non-zero weak-label loss.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer
from cct_train.weak import load_cam_classifier

pytestmark = pytest.mark.data

runner = CliRunner()
NAMES = [f"horse{i:03d}" for i in range(1, 9)]


def _config(root: Path, work: Path, **data: Any) -> dict[str, Any]:
    (work / "labeled.txt").write_text("\n".join(NAMES[:4]))
    (work / "unlabeled.txt").write_text("\n".join(NAMES[4:]))
    return {
        "experiment": {"name": "weak", "output_dir": str(work / "run"), "seed": 0},
        "model": {
            "encoder": "timm:resnet18",
            "psp_channels": 32,
            "perturbations": {"feature_noise": 1, "dropout": 1},
        },
        "data": {
            "dataset": "horses",
            "root": str(root),
            "val_split": None,
            "split": {
                "labeled_list": str(work / "labeled.txt"),
                "unlabeled_list": str(work / "unlabeled.txt"),
            },
            "resize": [64, 64],
            "crop_size": [64, 64],
            "scale_range": [0.75, 1.25],
            "batch_size": 4,
            "num_workers": 0,
            **data,
        },
        "train": {"iterations": 2, "eval_every": 0, "checkpoint_every": 0, "log_every": 1},
    }


@pytest.fixture(scope="module")
def cam_setup(horses_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(work dir, config file, trained CAM checkpoint): `cct cam train` for a few iterations."""
    work = tmp_path_factory.mktemp("weak")
    cfg_path = work / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(horses_root, work)))
    (work / "names.txt").write_text("\n".join(NAMES))
    run = runner.invoke(
        app,
        [
            "cam",
            "train",
            "-c",
            str(cfg_path),
            "--from-masks",
            "--names",
            str(work / "names.txt"),
            "--output",
            str(work / "cam"),
            "--iterations",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert run.exit_code == 0, run.output
    return work, cfg_path, work / "cam" / "cam_classifier.pt"


def _pseudo_labels(cfg: Path, checkpoint: Path, out: Path, *extra: str) -> Any:
    args = ["pseudo-labels", str(checkpoint), "-c", str(cfg), "--names", str(cfg.parent / "names.txt")]
    return runner.invoke(app, [*args, "--from-masks", "--output", str(out), "--device", "cpu", *extra])


def _check_pngs(out: Path) -> None:
    for name in NAMES:
        labels = np.asarray(Image.open(out / f"{name}.png"))
        assert labels.shape == (64, 64)
        assert labels.dtype == np.uint8
        assert set(np.unique(labels).tolist()) <= {0, 1, 255}


def test_cam_checkpoint(cam_setup: tuple[Path, Path, Path]) -> None:
    _, _, checkpoint = cam_setup
    loaded = load_cam_classifier(checkpoint)
    assert loaded.num_classes == 2
    assert loaded.class_names == ["background", "horse"]
    assert loaded.encoder == "timm:resnet18"
    assert loaded.info["num_images"] == len(NAMES)


def test_pseudo_labels_crf_and_weak_training(
    cam_setup: tuple[Path, Path, Path], horses_root: Path, tmp_path: Path
) -> None:
    work, cfg_path, checkpoint = cam_setup
    out = tmp_path / "pseudo"
    run = _pseudo_labels(cfg_path, checkpoint, out, "--workers", "2")
    assert run.exit_code == 0, run.output
    _check_pngs(out)
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == len(NAMES)
    assert report["settings"]["crf"] is True
    assert report["settings"]["image_labels"] == "masks"
    assert set(report["class_pixels"]) == {"background", "horse"}
    assert sum(report["class_pixels"].values()) + report["ignore_pixels"] == len(NAMES) * 64 * 64
    assert 0.0 <= report["ignore_fraction"] < 1.0
    assert 0.0 <= report["miou"] <= 1.0
    assert set(report["per_class_iou"]) == {"background", "horse"}
    # The CRF only removes labels (disagreement -> ignored): never fewer ignored pixels than before it.
    assert report["ignore_pixels"] >= report["thresholded"]["ignore_pixels"]

    # A few CCT steps where the auxiliary decoders learn from the pseudo-labels of the unlabeled images.
    cfg = config_from_dict(_config(horses_root, work, pseudo_labels=str(out)))
    trainer = Trainer(cfg, quiet=True)
    batch = next(iter(trainer.unlabeled_loader))
    assert "mask" in batch
    assert tuple(batch["mask"].shape) == (4, 64, 64)
    result = trainer.fit()
    assert result.step == 2
    with (work / "run" / "logs" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["key"] == "loss_weak"]
    assert len(rows) == 2
    assert all(float(r["value"]) > 0 for r in rows)


def test_pseudo_labels_without_crf_and_without_pydensecrf(
    cam_setup: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cfg_path, checkpoint = cam_setup
    for module in ("pydensecrf", "pydensecrf.densecrf", "pydensecrf.utils"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError

    run = _pseudo_labels(cfg_path, checkpoint, tmp_path / "crf")
    assert run.exit_code == 2
    assert "pydensecrf2" in run.output
    assert "--no-crf" in run.output
    assert not (tmp_path / "crf").exists()  # failed before any work

    out = tmp_path / "nocrf"
    run = _pseudo_labels(cfg_path, checkpoint, out, "--no-crf", "--background-index", "0")
    assert run.exit_code == 0, run.output
    _check_pngs(out)
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["crf"] is False
    assert "thresholded" not in report
    assert 0.0 <= report["miou"] <= 1.0


def test_pseudo_labels_from_a_labels_file(cam_setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, cfg_path, checkpoint = cam_setup
    labels = tmp_path / "labels.csv"
    labels.write_text("name,labels\n" + "".join(f"{n},horse\n" for n in NAMES[:3]))
    out = tmp_path / "file"
    args = ["pseudo-labels", str(checkpoint), "-c", str(cfg_path), "--labels", str(labels), "--no-crf"]
    run = runner.invoke(app, [*args, "--output", str(out), "--device", "cpu"])
    assert run.exit_code == 0, run.output
    assert sorted(p.stem for p in out.glob("*.png")) == NAMES[:3]  # the images of the labels file
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["image_labels"] == "file"
    assert report["images_per_class"]["background"] + report["images_per_class"]["horse"] >= 3

    labels.write_text("name,labels\nhorse001,hrose\n")
    run = runner.invoke(app, [*args, "--output", str(tmp_path / "bad"), "--device", "cpu"])
    assert run.exit_code == 2
    assert "line 2" in run.output
    assert "hrose" in run.output
