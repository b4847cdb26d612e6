"""`mixed_precision: auto` end to end (issue #18): the CPU study preset, `cct study`, `cct demo` and the trainer
train in float32 on a CPU without native bf16 and in bf16 on one with it, and print which and why.

The CPU's capability is mocked both ways (cct_train.engine.hardware.cpu_info); the training itself is real."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cct_train.engine import hardware
from cct_train.engine.hardware import CPUInfo

REPO = Path(__file__).resolve().parents[1]
NO_BF16 = CPUInfo("AMD EPYC 7B12", "AVX2", (), onednn_bf16=False)  # issue #18's CPU
NATIVE_BF16 = CPUInfo("AMD EPYC", "AVX512", ("avx512_bf16",), onednn_bf16=True)
CASES = [
    pytest.param(NO_BF16, "no", "float32", id="no-native-bf16"),
    pytest.param(NATIVE_BF16, "bf16", "bf16 autocast", id="native-bf16"),
]


@pytest.fixture
def as_cpu(monkeypatch: pytest.MonkeyPatch) -> Callable[[CPUInfo], None]:
    monkeypatch.setattr(hardware, "_warned", set())

    def use(info: CPUInfo) -> None:
        monkeypatch.setattr(hardware, "cpu_info", lambda: info)

    return use


@pytest.mark.parametrize(("info", "used", "label"), CASES)
def test_cpu_study_preset_resolves_auto(
    as_cpu: Callable[[CPUInfo], None], info: CPUInfo, used: str, label: str
) -> None:
    from cct_train.study import base_config, fingerprint, load_study_config, plan_runs, study_precision

    as_cpu(info)
    study = load_study_config(REPO / "configs" / "study" / "camvid-cpu.yaml")
    base = base_config(study)
    assert base.train.mixed_precision == "auto"
    resolved, choice = study_precision(base)
    assert (resolved.train.mixed_precision, choice.precision, choice.label) == (used, used, label)
    # The runs hold the precision used: `auto` on a native-bf16 CPU is the same run as the former `bf16`
    # preset (its results on disk stay valid); without native bf16 it is a float32 run.
    explicit = load_study_config(
        REPO / "configs" / "study" / "camvid-cpu.yaml", [f"base.train.mixed_precision={used}"]
    )
    runs = plan_runs(study, resolved, Path("runs"))
    same = plan_runs(explicit, base_config(explicit), Path("runs"))
    assert [fingerprint(r.config) for r in runs] == [fingerprint(r.config) for r in same]


@pytest.mark.parametrize(("info", "used", "label"), CASES)
def test_study_trains_in_the_resolved_precision_and_says_so(
    synthetic_root: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    as_cpu: Callable[[CPUInfo], None],
    info: CPUInfo,
    used: str,
    label: str,
) -> None:
    from cct_train.cli.study import app

    as_cpu(info)
    base = tiny_config(synthetic_root, tmp_path / "unused", iterations=1, checkpoint_every=0, trackers=[])
    base["train"]["mixed_precision"] = "auto"
    base["model"]["perturbations"] = {}
    base["data"]["check"] = "off"
    study = {
        "name": "tiny",
        "budget": "test",
        "base": base,
        "n_labeled": [4],
        "seeds": [0],
        "methods": ["supervised"],
        "qualitative": {"images": 1},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    output = tmp_path / "report"
    run = CliRunner().invoke(
        app, ["--config", str(tmp_path / "study.yaml"), "--output", str(output), "--threads", "1"]
    )
    assert run.exit_code == 0, run.output
    flat = " ".join(run.output.split())
    assert f"precision: {label} (auto:" in flat
    assert "threads: 1 per run (set explicitly" in flat
    report = json.loads((output / "results.json").read_text())
    assert report["precision"]["requested"] == "auto"
    assert report["precision"]["used"] == used
    assert report["hardware"]["cpu_capability"]
    run_dir = output / "runs" / "n4" / "supervised" / "seed0"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["mixed_precision"] == used
    assert f"precision {label} (asked: auto" in (output / "results.md").read_text()


@pytest.mark.parametrize(("info", "used", "label"), CASES)
def test_demo_trains_in_the_resolved_precision_and_says_so(
    tmp_path: Path,
    as_cpu: Callable[[CPUInfo], None],
    capsys: pytest.CaptureFixture[str],
    info: CPUInfo,
    used: str,
    label: str,
) -> None:
    from cct_train.data import generate_synthetic_dataset
    from cct_train.tools.demo import DEMO_OBJECT_SCALE, DEMO_SIZE, demo_config, run_demo

    as_cpu(info)
    assert (
        demo_config(
            None, tmp_path, mode="cct", iterations=1, encoder="timm:resnet18", seed=0
        ).train.mixed_precision
        == "auto"
    )
    # A small copy of the demo's scenes where the demo looks for them (it generates 300 otherwise).
    generate_synthetic_dataset(
        tmp_path / "data", n_train=16, n_val=4, size=DEMO_SIZE, seed=0, object_scale=DEMO_OBJECT_SCALE
    )
    run_demo(output=tmp_path, iterations=1, compare=False, threads=1)
    printed = " ".join(capsys.readouterr().err.split())
    assert f"precision: {label} (auto:" in printed
    assert info.model in printed
    checkpoint = tmp_path / "cct" / "checkpoints" / "last.pt"
    from cct_train.common.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["precision"]["used"] == used


def test_trainer_on_a_cpu_without_native_bf16_warns_for_explicit_bf16(
    synthetic_root: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    as_cpu: Callable[[CPUInfo], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cct_train.config import config_from_dict
    from cct_train.engine.hardware import SlowPrecisionWarning
    from cct_train.engine.trainer import Trainer

    as_cpu(NO_BF16)
    monkeypatch.setattr(hardware, "measure_bf16_slowdown", lambda: 12.5)
    cfg = tiny_config(synthetic_root, tmp_path / "run", iterations=1, checkpoint_every=0, trackers=[])
    cfg["train"]["mixed_precision"] = "bf16"
    cfg["model"]["perturbations"] = {"feature_noise": 1}
    with pytest.warns(SlowPrecisionWarning, match="12.5x slower"):
        trainer = Trainer(config_from_dict(cfg), quiet=True)
    assert trainer.precision.precision == "bf16"
    assert trainer.accelerator.mixed_precision == "bf16"  # still honoured
    assert trainer.fit().step == 1
