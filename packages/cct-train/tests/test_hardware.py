"""cct_train.engine.hardware: the precision and thread decisions, with the CPU / GPU capability mocked both ways."""

from __future__ import annotations

import warnings

import pytest
import torch

from cct_train.engine import hardware
from cct_train.engine.hardware import (
    CPUInfo,
    SlowPrecisionWarning,
    choose_threads,
    cpu_info,
    resolve_precision,
    threads_per_job,
)

#: The CPU of issue #18: AVX2 only, no AVX512, no bf16 instructions; oneDNN has no bf16 path.
AVX2_EPYC = CPUInfo("AMD EPYC 7B12", "AVX2", (), onednn_bf16=False)
#: The CPU the presets were sized on: AVX512 with AVX512-BF16.
BF16_EPYC = CPUInfo("AMD EPYC", "AVX512", ("avx512_bf16",), onednn_bf16=True)
#: AVX512 without bf16 instructions (e.g. Skylake-SP): oneDNN would emulate bf16.
SKYLAKE = CPUInfo("Intel Xeon Gold 6148", "AVX512", (), onednn_bf16=True)
#: Sapphire Rapids: AMX.
SPR = CPUInfo("Intel Xeon Platinum 8480", "AVX512", ("avx512_bf16", "amx_bf16"), onednn_bf16=True)


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fresh warn-once state and a fake probe (no timing in tests)."""
    monkeypatch.setattr(hardware, "_warned", set())
    monkeypatch.setattr(hardware, "measure_bf16_slowdown", lambda: 14.0)
    return monkeypatch


def _as(monkeypatch: pytest.MonkeyPatch, info: CPUInfo) -> None:
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)


@pytest.mark.parametrize("info", [BF16_EPYC, SPR])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(cpu: pytest.MonkeyPatch, info: CPUInfo) -> None:
    _as(cpu, info)
    choice = resolve_precision("auto", "cpu")
    assert choice.precision == "bf16"
    assert choice.label == "bf16 autocast"
    assert "native bf16" in choice.reason
    assert info.model in choice.reason
    assert info.bf16_instructions[0] in choice.reason
    precision, reason = choice  # a (precision, reason) pair
    assert (precision, reason) == (choice.precision, choice.reason)


@pytest.mark.parametrize("info", [AVX2_EPYC, SKYLAKE])
def test_auto_is_float32_without_native_bf16(cpu: pytest.MonkeyPatch, info: CPUInfo) -> None:
    _as(cpu, info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        choice = resolve_precision("auto", "cpu")
    assert choice.precision == "no"
    assert choice.label == "float32"
    assert "no native bf16" in choice.reason or "no bf16 instructions" in choice.reason
    assert info.capability in choice.reason


def test_explicit_bf16_without_native_bf16_runs_and_warns_once(cpu: pytest.MonkeyPatch) -> None:
    _as(cpu, AVX2_EPYC)
    with pytest.warns(SlowPrecisionWarning) as caught:
        choice = resolve_precision("bf16", "cpu")
    assert choice.precision == "bf16"  # honoured
    message = str(caught[0].message)
    assert "14.0x slower" in message  # the probe's measurement on this CPU
    assert "4.5 s" in message
    assert "AVX2" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu").precision == "bf16"  # once per process
    assert resolve_precision("bf16", "cpu", warn=False).precision == "bf16"


def test_explicit_bf16_with_native_bf16_does_not_warn(cpu: pytest.MonkeyPatch) -> None:
    _as(cpu, BF16_EPYC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu").precision == "bf16"


def test_explicit_choices_are_kept(cpu: pytest.MonkeyPatch) -> None:
    _as(cpu, BF16_EPYC)
    assert resolve_precision("no", "cpu") == ("no", "requested")
    assert resolve_precision("fp32", "cpu").precision == "no"
    assert resolve_precision("fp16", "cuda").precision == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", "cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_on_cuda_follows_the_device(cpu: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    cpu.setattr(torch.cuda, "is_available", lambda: True)
    cpu.setattr(hardware, "cuda_native_bf16", lambda: native)
    cpu.setattr(hardware, "device_description", lambda device: "NVIDIA T4 (compute capability 7.5)")
    choice = resolve_precision("auto", "cuda")
    assert choice.precision == expected
    assert "NVIDIA T4" in choice.reason


def test_auto_without_a_cuda_device(cpu: pytest.MonkeyPatch) -> None:
    cpu.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cuda") == (
        "no",
        "auto: no CUDA device is available; float32 is faster here",
    )


def test_cpu_info_describes_this_machine() -> None:
    info = cpu_info()
    assert info.model
    assert info.capability
    assert set(info.bf16_instructions) <= set(hardware.BF16_INSTRUCTIONS)
    assert info.native_bf16 == (info.onednn_bf16 and bool(info.bf16_instructions))
    text = info.describe()
    assert info.model in text
    assert info.capability in text
    data = info.to_dict()
    assert data["native_bf16"] == info.native_bf16
    assert set(data) == {"model", "capability", "bf16_instructions", "onednn_bf16", "native_bf16"}


def test_native_bf16_needs_both_instructions_and_onednn() -> None:
    assert BF16_EPYC.native_bf16
    assert SPR.native_bf16
    assert not AVX2_EPYC.native_bf16
    assert not SKYLAKE.native_bf16
    # bf16 instructions, but oneDNN limited below them (ONEDNN_MAX_CPU_ISA=AVX2): not native.
    assert not CPUInfo("AMD EPYC", "AVX512", ("avx512_bf16",), onednn_bf16=False).native_bf16


def test_measure_bf16_slowdown_runs() -> None:
    ratio = hardware.measure_bf16_slowdown.__wrapped__(repeats=1)
    assert ratio is None or ratio > 0


# ---------------------------------------------------------------------------------------------- threads
def test_threads_per_job_unchanged() -> None:
    assert threads_per_job(1, cores=2) == 2
    assert threads_per_job(2, cores=2) == 1
    assert threads_per_job(4, cores=2) == 1
    assert threads_per_job(2, cores=16) == 8


def test_explicit_threads_win() -> None:
    choice = choose_threads(2, requested=3, cores=2, load=5.0)
    assert choice.threads == 3
    assert "explicit" in choice.reason


@pytest.mark.parametrize(
    ("jobs", "cores", "load", "threads"),
    [
        (1, 2, 0.1, 2),  # idle 2-core machine, one run: both cores
        (2, 2, 0.1, 1),  # two runs: one core each
        (1, 2, 1.2, 1),  # another job keeps a core busy
        (1, 2, 6.0, 1),  # overloaded: at least one
        (2, 16, 0.0, 8),
        (2, 16, 10.0, 3),  # 6 free cores for 2 runs
        (1, 8, None, 8),  # no load average: all cores
    ],
)
def test_threads_from_cores_and_load(jobs: int, cores: int, load: float | None, threads: int) -> None:
    choice = choose_threads(jobs, cores=cores, load=load)
    assert choice.threads == threads
    assert f"{cores} core(s) available" in choice.reason
    assert ("no load average" in choice.reason) == (load is None)


def test_busy_machine_is_said() -> None:
    assert "busy" in choose_threads(2, cores=2, load=1.5).reason
    assert "busy" not in choose_threads(1, cores=16, load=1.0).reason


def test_load_is_scaled_to_this_process_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (32.0, 0.0, 0.0))
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 64)
    assert hardware.other_load(cores=4) == pytest.approx(2.0)  # a container with 4 of 64 host cores
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    assert hardware.other_load(cores=4) == pytest.approx(32.0)


def test_available_cores_respects_a_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_cgroup_quota", lambda: 1.5)
    assert hardware.available_cores() == min(2, len(hardware.os.sched_getaffinity(0)))
    monkeypatch.setattr(hardware, "_cgroup_quota", lambda: None)
    assert hardware.available_cores() == len(hardware.os.sched_getaffinity(0))
