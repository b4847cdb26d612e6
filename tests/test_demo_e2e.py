"""`cct demo`: both runs side by side in worker processes (issue #15: the demo fits a few minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cct_train.data import generate_synthetic_dataset
from cct_train.tools import demo


def test_demo_trains_both_runs_side_by_side(tmp_path: Path) -> None:
    # A small copy of the demo's scenes where the demo looks for them (it generates 300 otherwise).
    generate_synthetic_dataset(
        tmp_path / "data",
        n_train=16,
        n_val=4,
        size=demo.DEMO_SIZE,
        seed=0,
        object_scale=demo.DEMO_OBJECT_SCALE,
    )
    results = demo.run_demo(output=tmp_path, iterations=2, encoder="timm:resnet18", jobs=2)
    assert set(results) == {"supervised", "cct"}
    stored = json.loads((tmp_path / "results.json").read_text())
    for mode in ("supervised", "cct"):
        metrics = json.loads((tmp_path / mode / "metrics.json").read_text())
        assert stored[mode]["miou"] == pytest.approx(metrics["miou"])
        assert set(stored[mode]["per_class_iou"]) == set(metrics["per_class_iou"])
        assert (tmp_path / mode / "model.safetensors").is_file()
    assert (tmp_path / "predictions.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("runs", "threads", "cores", "expected"),
    [(2, None, 2, 2), (2, None, 1, 1), (2, 2, 2, 1), (1, None, 2, 1)],
)
def test_side_by_side_when_there_is_a_core_per_run(
    runs: int, threads: int | None, cores: int, expected: int
) -> None:
    assert demo.demo_jobs(runs, threads, cores=cores) == expected
