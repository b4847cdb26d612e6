"""`cct demo`: both runs side by side in worker processes (issue #15: the demo fits a few minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cct_train.data import generate_synthetic_dataset
from cct_train.tools import demo


def test_demo_trains_both_runs_side_by_side(tmp_path: Path) -> None:
    # A small copy of the demo's scenes where the demo looks for them (it generates 300 otherwise).
    generate_synthetic_dataset(tmp_path / "data", n_train=16, n_val=4, size=demo.DEMO_SIZE, seed=0)
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
    ("runs", "threads", "load", "expected"),
    [(2, None, 0.0, 2), (2, None, 1.2, 1), (2, 2, 0.0, 1), (1, None, 0.0, 1)],
)
def test_side_by_side_only_when_the_cores_are_free(
    monkeypatch: pytest.MonkeyPatch, runs: int, threads: int | None, load: float, expected: int
) -> None:
    import cct_train.engine.machine as machine

    monkeypatch.setattr(machine, "other_load", lambda cores=None: load)
    assert demo.demo_jobs(runs, threads, cores=2) == expected
