"""What this machine can do fast: the training precision and the torch thread count, chosen from it.

Two decisions, each returned with the reason it was taken, so that every entry point (the trainer,
``cct study``, ``cct demo``, ``cct bench``) can print it and record it:

- :func:`resolve_precision`: ``mixed_precision: auto`` becomes bf16 autocast where bf16 runs natively (a
  CUDA device of compute capability 8.0 or more; a CPU whose bf16 instructions oneDNN uses: AVX512-BF16 or
  AMX on x86, the BF16 extension on Arm) and float32 elsewhere. bf16 autocast on a CPU without them still
  runs, through emulated or reference kernels, and is much slower than float32: on an AMD EPYC with AVX2
  only, a step of the CamVid CPU study's model took 4.5 s with bf16 against 0.3 s in float32 (issue #18).
  An explicit ``bf16`` there is honoured, with one warning per process that gives the slow-down measured on
  this CPU by a small convolution probe (:func:`measure_bf16_slowdown`).
- :func:`choose_threads`: torch threads per run from the cores this process may use (affinity mask and
  cgroup CPU quota) minus what other jobs keep busy (the 1-minute load average), shared out between the
  parallel runs; an explicit count (``--threads``) wins.

The CPU's description (:func:`cpu_info`: model name, the capability torch's ATen dispatch uses, the bf16
instructions torch detects, whether oneDNN has a bf16 path) goes into ``cct bench`` JSON and study reports.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch

#: Hardware bf16 instructions, as named by ``torch.cpu.get_capabilities()`` (x86: AVX512-BF16 and AMX-BF16;
#: Arm: the BF16 extension and SVE-BF16). Without one of them bf16 is converted in software.
BF16_INSTRUCTIONS: tuple[str, ...] = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")

#: What was measured where bf16 is not native (issue #18), quoted in the warning beside this CPU's probe.
BF16_SLOW_EVIDENCE = (
    "on an AMD EPYC with AVX2 only (no AVX512, no native bf16) a CamVid CPU-study step took 4.5 s with bf16 "
    "autocast against 0.3 s in float32 (issue #18)"
)

PRECISION_LABELS = {"no": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}


class SlowPrecisionWarning(UserWarning):
    """bf16 autocast was asked for on a device without native bf16: it runs, but slower than float32."""


# ---------------------------------------------------------------------------------------------- the CPU
@dataclass(frozen=True)
class CPUInfo:
    """The CPU as torch sees it."""

    #: Model name (``/proc/cpuinfo``, else torch's cpuinfo, else ``platform``).
    model: str
    #: The instruction set ATen's CPU kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``:
    #: ``DEFAULT``, ``AVX2``, ``AVX512``, ``SVE256``...; ``ATEN_CPU_CAPABILITY`` can lower it).
    capability: str
    #: The hardware bf16 instructions torch's cpuinfo detects (:data:`BF16_INSTRUCTIONS`).
    bf16_instructions: tuple[str, ...]
    #: Whether oneDNN has a bf16 path at its effective ISA (``torch.ops.mkldnn._is_mkldnn_bf16_supported``:
    #: AVX512 core or better on x86, which is emulated without AVX512-BF16; ``ONEDNN_MAX_CPU_ISA`` can lower it).
    onednn_bf16: bool

    @property
    def native_bf16(self) -> bool:
        """bf16 runs natively: oneDNN has a bf16 path and the CPU has bf16 instructions for it."""
        return self.onednn_bf16 and bool(self.bf16_instructions)

    def describe(self) -> str:
        """One line: model, torch capability, bf16 instructions, oneDNN bf16."""
        bf16 = ", ".join(self.bf16_instructions) or "no bf16 instructions"
        return (
            f"{self.model} (torch CPU capability {self.capability}; {bf16}; "
            f"oneDNN bf16 {'yes' if self.onednn_bf16 else 'no'})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bf16_instructions"] = list(self.bf16_instructions)
        data["native_bf16"] = self.native_bf16
        return data


def _capabilities() -> dict[str, Any]:
    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get is None:  # torch < 2.9: read the kernel's flags (Linux) instead
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
        for line in text.splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                return {name: name in flags or name.replace("_", "") in flags for name in BF16_INSTRUCTIONS}
        return {}
    try:
        return dict(get())
    except Exception:  # pragma: no cover - an exotic platform cpuinfo cannot read
        return {}


def cpu_model() -> str:
    """The CPU's model name, as the kernel, torch's cpuinfo or ``platform`` report it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    name = _capabilities().get("cpu_name")
    return str(name) if name else (platform.processor() or platform.machine() or "unknown CPU")


@lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU (cached: it does not change while the process runs)."""
    caps = _capabilities()
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # torch built without oneDNN
        onednn = False
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - very old torch
        capability = "unknown"
    return CPUInfo(
        model=cpu_model(),
        capability=capability,
        bf16_instructions=tuple(name for name in BF16_INSTRUCTIONS if caps.get(name)),
        onednn_bf16=onednn,
    )


def cuda_native_bf16() -> bool:
    """The current CUDA device computes in bf16 natively (compute capability >= 8.0, or ROCm)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # pragma: no cover - torch without the keyword
        return bool(torch.cuda.is_bf16_supported())


def device_description(device: str | torch.device) -> str:
    """What a figure measured on ``device`` was measured on: the GPU's name, or the CPU's :meth:`describe`."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})"
    return cpu_info().describe()


# ---------------------------------------------------------------------------------------------- precision
class PrecisionChoice(NamedTuple):
    """What :func:`resolve_precision` decided: ``precision`` in Accelerate's words (``"no"``, ``"bf16"``,
    ``"fp16"``) and why."""

    precision: str
    reason: str

    @property
    def label(self) -> str:
        """``float32`` / ``bf16 autocast`` / ``fp16 autocast``."""
        return PRECISION_LABELS.get(self.precision, self.precision)

    def describe(self) -> str:
        return f"precision: {self.label} ({self.reason})"


_warned: set[tuple[str, str]] = set()


def resolve_precision(requested: str, device: str | torch.device, *, warn: bool = True) -> PrecisionChoice:
    """The precision to train in on ``device`` for ``requested`` (``auto``, ``no`` / ``fp32``, ``bf16``,
    ``fp16``), with the reason.

    ``auto``: bf16 autocast where bf16 is native (CUDA compute capability >= 8.0; a CPU with AVX512-BF16,
    AMX or Arm BF16 that oneDNN uses), float32 otherwise. An explicit request is kept; ``bf16`` on a device
    without native bf16 warns once per process (:class:`SlowPrecisionWarning`, with the slow-down measured
    on this CPU) unless ``warn`` is false.
    """
    dev = torch.device(device)
    requested = "no" if requested in ("fp32", "float32", "none") else requested
    if requested not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"unknown precision {requested!r}; known: auto, no (fp32), bf16, fp16")
    if dev.type == "cuda":
        native = torch.cuda.is_available() and cuda_native_bf16()
        if not torch.cuda.is_available():
            why_native = "no CUDA device is available"
        else:
            where = device_description(dev)
            why_native = f"{where}: native bf16" if native else f"{where}: no native bf16 (needs 8.0 or more)"
    elif dev.type == "cpu":
        info = cpu_info()
        native = info.native_bf16
        if native:
            why_native = f"native bf16 on this CPU: {info.describe()}"
        elif not info.onednn_bf16:
            why_native = f"no native bf16 on this CPU, oneDNN has no bf16 path at its ISA: {info.describe()}"
        else:
            why_native = f"no bf16 instructions on this CPU (oneDNN would emulate bf16): {info.describe()}"
    else:
        native = False
        why_native = f"{dev.type} device: bf16 is chosen automatically only on CUDA and CPU"
    if requested == "auto":
        if native:
            return PrecisionChoice("bf16", f"auto: {why_native}")
        return PrecisionChoice("no", f"auto: {why_native}; float32 is faster here")
    if requested == "bf16" and not native:
        reason = f"requested; {why_native}"
        if warn and dev.type == "cpu" and (key := ("bf16", dev.type)) not in _warned:
            _warned.add(key)
            slowdown = measure_bf16_slowdown()
            measured = (
                f"a small convolution probe ran {slowdown:.1f}x slower in bf16 than in float32 on this CPU; "
                if slowdown is not None
                else ""
            )
            warnings.warn(
                f"train.mixed_precision=bf16 on a CPU without native bf16 ({cpu_info().describe()}): it runs, "
                f"but slowly: {measured}{BF16_SLOW_EVIDENCE}. Use mixed_precision: auto (or no) for float32.",
                SlowPrecisionWarning,
                stacklevel=2,
            )
        elif warn and dev.type != "cpu" and (key := ("bf16", dev.type)) not in _warned:
            _warned.add(key)
            warnings.warn(
                f"train.mixed_precision=bf16 on a device without native bf16 ({why_native}): it may be "
                "slower than float32. Use mixed_precision: auto (or no) for float32.",
                SlowPrecisionWarning,
                stacklevel=2,
            )
        return PrecisionChoice("bf16", reason)
    if requested == "bf16":
        return PrecisionChoice("bf16", f"requested; {why_native}")
    return PrecisionChoice(requested, "requested")


@lru_cache(maxsize=1)
def measure_bf16_slowdown(repeats: int = 5) -> float | None:
    """bf16-autocast time / float32 time of one small convolution's forward + backward on the CPU (a few
    milliseconds in float32; median of ``repeats`` after a warm-up), or None when it cannot run."""
    try:
        generator = torch.Generator().manual_seed(0)
        conv = torch.nn.Conv2d(32, 32, 3, padding=1)
        x = torch.randn(2, 32, 32, 32, generator=generator, requires_grad=True)

        def seconds(bf16: bool) -> float:
            times = []
            for i in range(repeats + 1):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = conv(x)
                y.float().sum().backward()
                if i:
                    times.append(time.perf_counter() - start)
            return statistics.median(times)

        fp32 = seconds(False)
        bf16 = seconds(True)
    except Exception:  # pragma: no cover - the probe must never stop training
        return None
    return bf16 / fp32 if fp32 > 0 else None


# ---------------------------------------------------------------------------------------------- threads
def available_cores() -> int:
    """CPU cores this process may use: its affinity mask (where the platform has one), capped by a cgroup
    v2 CPU quota (``cpu.max``, containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup v2 ``cpu.max`` of this process, None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """torch threads of each of ``jobs`` parallel runs: the cores shared out, at least one each."""
    return max(1, (cores or available_cores()) // max(1, jobs))


def other_load(cores: int | None = None) -> float | None:
    """Cores kept busy by other jobs: the 1-minute load average, scaled to this process's share of the
    machine when it may use fewer cores than the machine has (a container sees the host's load); None
    where there is no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None
    cores = cores or available_cores()
    total = os.cpu_count() or cores
    return load * cores / total if total > cores else load


class ThreadChoice(NamedTuple):
    """What :func:`choose_threads` decided: torch threads per run, and why."""

    threads: int
    reason: str

    def describe(self) -> str:
        return f"threads: {self.threads} per run ({self.reason})"


def choose_threads(
    jobs: int = 1,
    *,
    requested: int | None = None,
    cores: int | None = None,
    load: float | None = -1.0,
) -> ThreadChoice:
    """torch threads for each of ``jobs`` runs in parallel, with the reason.

    ``requested`` (``--threads``) wins. Otherwise the free cores, i.e. :func:`available_cores` minus the
    cores other jobs keep busy (:func:`other_load`, rounded to the nearest core), shared out between the
    jobs by :func:`threads_per_job`, at least one each. One thread per run when the machine is busy: with
    more OpenMP threads than free cores, each parallel region waits for a descheduled thread (on a shared
    2-core machine a 2-thread run was measured 5-10x slower than a 1-thread one beside another run).
    ``cores`` and ``load`` (None: no load average) are for tests; by default they are read from the machine.
    """
    jobs = max(1, jobs)
    if requested is not None:
        return ThreadChoice(requested, "set explicitly (--threads)")
    cores = cores or available_cores()
    if load is not None and load < 0:
        load = other_load(cores)
    busy = 0 if load is None else min(cores, math.floor(load + 0.5))
    free = max(1, cores - busy)
    threads = threads_per_job(jobs, cores=free)
    load_text = "no load average" if load is None else f"load average {load:.2f} from other jobs"
    reason = f"{cores} core(s) available, {load_text} -> {free} free"
    reason += f", shared by {jobs} parallel run(s)" if jobs > 1 else ""
    if cores - busy < jobs:
        reason += "; busy: one thread per run waits least"
    return ThreadChoice(threads, reason)
