"""What a run logs (issue 41, items 4 and 5): any tracker Accelerate supports, per-class IoU, both learning
rates, prediction images; plain progress lines for batch jobs."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cct_train.config import Tracker, config_from_dict
from cct_train.engine import trackers
from cct_train.engine.trainer import Trainer


def test_every_accelerate_tracker_is_accepted() -> None:
    from accelerate.utils import LoggerType

    accepted = set(typing.get_args(Tracker))
    assert {t.value for t in LoggerType} - {"all"} <= accepted
    assert config_from_dict({"train": {"trackers": ["csv", "wandb", "mlflow"]}}).train.trackers == [
        "csv",
        "wandb",
        "mlflow",
    ]


def test_missing_tracker_package_gives_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trackers, "tracker_available", lambda name: name != "tensorboard")
    with pytest.raises(ValueError, match=r"tensorboard, not installed: pip install tensorboard") as info:
        trackers.check_trackers(["csv", "tensorboard"])
    assert "--set 'train.trackers=[csv]'" in str(info.value)
    trackers.check_trackers(["csv", "wandb"])  # "available" here


def _rows(csv: Path) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list[tuple[int, float]]] = {}
    for line in csv.read_text().splitlines()[1:]:
        step, key, value = line.split(",")
        found.setdefault(key, []).append((int(step), float(value)))
    return found


def test_run_logs_per_class_iou_both_rates_and_prediction_images(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(
        synthetic_root,
        tmp_path / "run",
        iterations=2,
        eval_every=2,
        log_every=1,
        trackers=["csv", "tensorboard"],
        log_images=2,
        optimizer={"lr": 0.01, "backbone_lr_factor": 0.1, "poly_power": 1.0},
    )
    Trainer(config_from_dict(raw), quiet=True).fit()
    logs = tmp_path / "run" / "logs"
    rows = _rows(logs / "metrics.csv")
    # the head's rate is `lr` (0.01 under the poly schedule), the backbone's `lr_backbone` (a tenth of it)
    assert rows["lr"][0] == (1, pytest.approx(0.005))
    assert rows["lr_backbone"][0] == (1, pytest.approx(0.0005))
    per_class = [key for key in rows if key.startswith("val/iou/")]
    assert per_class, f"no per-class IoU in {sorted(rows)}"
    assert set(per_class) <= {
        f"val/iou/{n}" for n in ("sky", "ground", "road", "circle", "rectangle", "triangle")
    }
    assert "val/pixel_accuracy" in rows
    png = logs / "images" / "val-predictions_step000002.png"
    with Image.open(png) as image:
        width, height = image.size
    assert height > 2 * 160
    assert width > 3 * 160
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(logs.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert "val/predictions" in events.Tags()["images"]
    assert any(tag.startswith("val/iou/") for tag in events.Tags()["scalars"])
    assert "lr_backbone" in events.Tags()["scalars"]


def test_csv_tracker_writes_each_image(tmp_path: Path) -> None:
    tracker = trackers.CSVTracker("t", tmp_path)
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    assert trackers.log_images([tracker], {"val/a b": image}, step=7) == ["csv"]
    assert (tmp_path / "images" / "val-a-b_step000007.png").is_file()


# -- item 5: a batch job's log ------------------------------------------------------------------------


def test_plain_line_format() -> None:
    from cct_train.common.progress import plain_line

    line = plain_line(
        20,
        300,
        {"loss": 1.5, "loss_sup": 1.25, "loss_unsup": 0.0, "lr": 0.0094, "lr_backbone": 0.00094},
        0.5,
        185.2,
    )
    assert (
        line
        == "step 20/300 | loss 1.5000 (sup 1.2500) | lr 0.0094, backbone 0.00094 | 2.00 s/it | ETA 0:03:05"
    )


def test_training_off_a_terminal_prints_a_line_every_log_every_steps(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]], cct: Callable[..., Any]
) -> None:
    from cct_train.config import save_config

    raw = tiny_config(
        synthetic_root, tmp_path / "run", iterations=4, log_every=2, eval_every=0, trackers=["csv"]
    )
    save_config(config_from_dict(raw), tmp_path / "cfg.yaml")
    proc = cct("train", "-c", str(tmp_path / "cfg.yaml"))  # stderr is a pipe, as in a batch job
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("step ") and "|" in line]
    assert [line.split(" | ")[0] for line in lines] == ["step 2/4", "step 4/4"]
    for line in lines:
        fields = line.split(" | ")
        assert fields[1].startswith("loss ")
        assert "sup " in fields[1]
        assert fields[2].startswith("lr ")
        assert ", backbone " in fields[2]
        assert fields[3].endswith(("it/s", "s/it"))
        assert fields[4].startswith("ETA ")
    assert "━" not in proc.stderr  # no progress bar drawn into the log
