"""`cct bench` machinery on a tiny workload (in-process, one step): JSON keys and the 2B supervised floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cct_train.tools.bench import DEFAULT_WORKLOADS, TARGETS, WORKLOADS, Workload, run_bench


def test_workloads_are_the_documented_ones() -> None:
    assert WORKLOADS["cpu"].encoder == "timm:resnet18"
    assert WORKLOADS["cpu"].size == (160, 160)
    assert WORKLOADS["cpu-r50"].encoder == "timm:resnet50"
    assert WORKLOADS["cpu-r50"].batch == 2
    assert WORKLOADS["cuda"].size == (321, 321)
    assert WORKLOADS["cuda"].batch == 8
    assert WORKLOADS["cuda"].amp == "bf16"
    # The CamVid CPU study's model (configs/study/camvid-cpu.yaml), in the precision auto picks.
    camvid = WORKLOADS["camvid-cpu"]
    assert (camvid.encoder, camvid.size, camvid.batch, camvid.classes) == ("timm:resnet10t", (72, 96), 4, 11)
    assert (camvid.amp, camvid.psp_channels, sum(camvid.perturbations.values())) == ("auto", 64, 11)
    assert sum(WORKLOADS["cpu"].perturbations.values()) == 30
    # The pretrained study's model, with and without the depthwise rewrite (cct_train.models.depthwise).
    pre, native = WORKLOADS["camvid-pretrained"], WORKLOADS["camvid-pretrained-native-dw"]
    assert (pre.encoder, pre.size, pre.batch, pre.classes, pre.psp_channels) == (
        "timm:tf_efficientnet_lite0",
        (72, 96),
        4,
        11,
        512,
    )
    assert native.encoder_kwargs == {"fast_depthwise": False}
    assert {**vars(native), "name": "", "encoder_kwargs": {}} == {
        **vars(pre),
        "name": "",
        "encoder_kwargs": {},
    }
    # The targets are checked on the original implementation's setting (issue #10), the default on CPU.
    assert DEFAULT_WORKLOADS == {"cuda": "cuda", "cpu": "cpu-r50"}
    assert WORKLOADS["cpu-r50"].reference_s_per_step == (3.3, 4.3)
    assert TARGETS == {"time": 1.1, "peak_memory": 1.1}


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
    assert set(res["cct_over_supervised"]) == {"time", "cpu_time", "peak_memory", "step_memory", "flops"}
    # The compute floor: CCT adds the auxiliary decoders' and VAT's FLOPs to the same encoder work (the
    # supervised step's main decoder backward on 2B images is more than CCT's on B, hence not much above 1).
    assert sup["gflop_per_step"] > 0
    assert 1.0 < res["cct_over_supervised"]["flops"] < 2.0
    targets = res["targets"]
    assert set(targets) == {"time", "peak_memory"}  # no reference figure for this workload
    for name, t in targets.items():
        assert t["limit"] == 1.1
        assert t["value"] == res["cct_over_supervised"][name]
        assert t["met"] == (t["value"] <= 1.1)
    assert set(res["perturbations_ms"]) == {"feature_noise", "vat", "object_mask"}
    assert res["inference_images_per_s"] > 0
    # What it was measured on and how (issue #18): precision and why, the CPU and its capability, threads.
    assert res["precision"]["requested"] == "no"
    assert res["precision"]["used"] == "no"
    assert res["precision"]["reason"]
    assert set(res["cpu"]) == {"model", "capability", "bf16_instructions", "onednn_bf16", "native_bf16"}
    assert res["cpu"]["capability"] in res["device_description"]
    assert res["threads"] >= 1
    assert res["threads_reason"]


@pytest.mark.parametrize(("native", "used"), [(False, "no"), (True, "bf16")])
def test_precision_auto_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], native: bool, used: str
) -> None:
    from cct_train.engine import hardware

    info = hardware.CPUInfo(
        "Test CPU", "AVX512" if native else "AVX2", ("avx512_bf16",) if native else (), onednn_bf16=native
    )
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)
    monkeypatch.setattr("cct_train.tools.bench.cpu_info", lambda: info)
    tiny = Workload(
        "tiny", "timm:resnet18", (32, 32), batch=2, classes=2, psp_channels=8, perturbations={"dropout": 1}
    )
    res = run_bench(
        "cpu", None, steps=1, workload=tiny, rounds=1, warmup=0, subprocess=False, precision="auto", threads=1
    )
    assert res["precision"]["requested"] == "auto"
    assert res["precision"]["used"] == used
    assert res["workload"]["amp"] == used
    assert res["cpu"]["model"] == "Test CPU"
    printed = " ".join(capsys.readouterr().out.split())
    assert f"precision: {'bf16 autocast' if native else 'float32'} (auto:" in printed
    assert "threads: 1 (set explicitly" in printed


def test_reference_figure_gives_the_speedup_over_the_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = Workload(
        "tiny-ref",
        "timm:resnet18",
        (32, 32),
        batch=2,
        classes=2,
        psp_channels=8,
        perturbations={"dropout": 1},
        reference_s_per_step=(3.3, 4.3),
    )
    res = run_bench("cpu", None, steps=1, workload=tiny, rounds=1, warmup=0, subprocess=False)
    vs = res["targets"]["vs_original"]
    ours = res["train_steps"][1]["s_per_step"]
    assert vs["speedup"] == pytest.approx([3.3 / ours, 4.3 / ours])
    assert vs["limit"] == 1.25
    assert vs["met"] == (3.3 / ours >= 1.25)
    printed = capsys.readouterr().out
    assert "[tiny-ref]" in printed  # the name is not eaten as rich markup
    assert "targets (CCT / supervised" in printed
    assert "vs the original" in printed


def test_unknown_workload() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        run_bench("cpu", workload="nope", quiet=True)
