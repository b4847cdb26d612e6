"""`cct bench` machinery on a tiny workload (in-process, one step): JSON keys and the 2B supervised floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cct_train.bench import WORKLOADS, Workload, run_bench


def test_workloads_are_the_documented_ones() -> None:
    assert WORKLOADS["cpu"].encoder == "timm:resnet18"
    assert WORKLOADS["cpu"].size == (160, 160)
    assert WORKLOADS["cpu-r50"].encoder == "timm:resnet50"
    assert WORKLOADS["cpu-r50"].batch == 2
    assert WORKLOADS["cuda"].size == (321, 321)
    assert WORKLOADS["cuda"].batch == 8
    assert WORKLOADS["cuda"].amp == "bf16"
    assert sum(WORKLOADS["cpu"].perturbations.values()) == 30


def test_tiny_bench_json(tmp_path: Path) -> None:
    tiny = Workload(
        "tiny",
        "timm:resnet18",
        (64, 64),
        batch=2,
        classes=3,
        psp_channels=16,
        perturbations={"feature_noise": 1, "vat": 1, "object_mask": 1},
    )
    out = tmp_path / "bench.json"
    res = run_bench("cpu", out, steps=1, workload=tiny, rounds=1, warmup=0, subprocess=False, quiet=True)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for key in (
        "workload",
        "device",
        "torch",
        "load_average",
        "train_steps",
        "cct_over_supervised",
        "perturbations_ms",
        "inference_images_per_s",
        "rounds",
    ):
        assert key in res
    sup, cct = res["train_steps"]
    assert sup["mode"] == "supervised"
    assert cct["mode"] == "cct"
    # The floor: the supervised step sees 2B labeled images, CCT B labeled + B unlabeled.
    assert (sup["labeled"], sup["unlabeled"]) == (4, 0)
    assert (cct["labeled"], cct["unlabeled"]) == (2, 2)
    assert sup["aux_decoders"] == 0
    assert cct["aux_decoders"] == 3
    for row in (sup, cct):
        for key in ("s_per_step", "cpu_s_per_step", "images_per_s", "peak_memory_mb", "step_memory_mb"):
            assert row[key] > 0 or key == "step_memory_mb"
    assert set(res["cct_over_supervised"]) == {"time", "cpu_time", "peak_memory", "step_memory"}
    assert set(res["perturbations_ms"]) == {"feature_noise", "vat", "object_mask"}
    assert res["inference_images_per_s"] > 0


def test_unknown_workload() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        run_bench("cpu", workload="nope", quiet=True)
