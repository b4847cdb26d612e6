"""`cct bench`: what a CCT step costs next to a supervised step, on whatever device is present.

The comparison (issue #10): a CCT step on B labeled + B unlabeled images against a supervised step on 2B
labeled images of the same size, same backbone: both run the encoder on 2B images, so the supervised
step is the floor and ``cct / supervised`` is the price of the K auxiliary decoders and perturbations.

Fixed, documented workloads (:data:`WORKLOADS`; so that figures from different machines compare), all from
random initialisation, 21 classes, output stride 8, PSP 512, SGD with momentum:

- ``cuda``:    timm:resnet50, 321x321, 8 labeled + 8 unlabeled (supervised: 16), bf16 autocast.
- ``cpu-r50``: timm:resnet50, 160x160, 2 + 2 (supervised: 4), fp32: the setting of the original
  implementation's figures quoted in the issue (3.3-4.3 s per step, 1.15-1.44x time, 1.5x memory), so the
  one whose targets are checked. The default on CPU.
- ``cpu``:     timm:resnet18, 160x160, 2 + 2 (supervised: 4), fp32: a quicker check. The auxiliary part
  costs the same as with ResNet-50 but the encoder a third, so its ratio is higher (docs/performance.md:
  the compute floor and why the 1.1x target is out of reach for it in eager PyTorch on a 2-core CPU).
- ``cpu-r50-bf16``: the same under bf16 autocast (oneDNN's AVX512-BF16 kernels roughly halve the
  encoder's time on CPUs that have them; docs/performance.md). On a CPU without native bf16 it still runs
  in bf16, with a warning: bf16 there is many times slower than float32.
- ``camvid-cpu``: the model of the CamVid CPU study (``configs/study/camvid-cpu.yaml``: timm:resnet10t, output
  stride 8, PSP 64, 11 classes, 72x96 crops, 4 + 4 images, the full-CCT run's 11 auxiliary decoders), in the
  precision ``auto`` picks: a minute or two, to see what the study costs on this machine
  (``--precision fp32`` / ``bf16`` to compare).
- ``camvid-pretrained``: the model of the pretrained CamVid study (``configs/study/camvid-pretrained.yaml``:
  EfficientNet-Lite0 at output stride 8, PSP 512, 72x96 crops, 4 + 4 images, 11 auxiliary decoders), precision
  ``auto``; ``camvid-pretrained-native-dw`` is the same with PyTorch's own depthwise kernels instead of
  :mod:`cct_train.models.depthwise` (run both to see what the rewrite saves on this CPU).

Precision. ``--precision`` (``auto``, ``fp32``, ``bf16``) overrides the workload's; ``auto`` is resolved by
:func:`cct_train.engine.hardware.resolve_precision` (bf16 where native, float32 elsewhere). The precision used,
why, the CPU's model and the capability torch reports (:func:`cct_train.engine.hardware.cpu_info`) are printed
and stored in the JSON (``precision``, ``cpu``), as are the torch threads and why
(:func:`cct_train.engine.hardware.choose_threads`; ``threads_reason``).

Method. Each (mode, round) runs in a FRESH subprocess (multiprocessing "spawn"): on CPU the peak memory
is the process's resident-set high-water mark (``ru_maxrss``), which only grows within a process, so one
process per measurement is the only way to get a per-workload peak. Reported: ``peak_memory_mb`` (the
whole process: interpreter, libraries, weights, optimizer state, the step's activations) and
``step_memory_mb`` (that peak minus the RSS just before the first step: what the training step itself
adds). On CUDA: ``torch.cuda.max_memory_allocated`` after model construction (``step_memory_mb``) and the
same plus nothing else (``peak_memory_mb``). The supervised and CCT processes alternate (S, C, S, C ...,
``rounds`` times) and the ratios are the medians of the per-round ratios, so that a slow spell of a shared
machine hits both. Times: wall clock per step (median over the timed steps of a round) and, on CPU, the
process CPU time per step (less sensitive to other people's load on a shared machine). The load average
is recorded before and after.

Also measured, in the CCT processes: each perturbation type alone on the unlabeled z (ms per call, VAT
includes its decoder forward + backward), and main-path inference throughput (eval mode, no grad, on the
2B images), and the floating-point operations of one step of each mode (``torch.utils.flop_counter``:
convolutions and matrix products), whose ratio is the compute floor of ``cct / supervised``: the ratio a
step would have if the auxiliary decoders ran as efficiently as the encoder.

The targets of issue #10 (:data:`TARGETS`: time and peak memory <= 1.1x the supervised step) are checked
and printed; for the original implementation's setting the per-step time is also set beside its
figures (:attr:`Workload.reference_s_per_step`, quoted in issue #10 from another machine, never run here:
a ratio to them is not a side-by-side measurement).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cct_train.common.atomic import atomic_write_text
from cct_train.config import CPU_PERTURBATIONS, PAPER_PERTURBATIONS
from cct_train.engine.hardware import (
    PRECISION_LABELS,
    PrecisionChoice,
    ThreadChoice,
    choose_threads,
    cpu_info,
    device_description,
    resolve_precision,
)
from cct_train.objectives.fused import SubPixelRows

console = Console()


@dataclass(frozen=True)
class Workload:
    """One benchmark setting. ``batch`` is B: the CCT step sees B + B images, the supervised step 2B."""

    name: str
    encoder: str
    size: tuple[int, int]
    batch: int
    classes: int = 21
    amp: str = "no"  # "auto" | "no" | "bf16" | "fp16" ("auto": cct_train.engine.hardware.resolve_precision)
    output_stride: int = 8
    psp_channels: int = 512
    perturbations: Mapping[str, int] = field(default_factory=lambda: dict(PAPER_PERTURBATIONS))
    #: Extra attributes set on the CCT model (e.g. ``{"fuse_aux_decoders": False}`` for the unfused reference).
    model_attrs: Mapping[str, Any] = field(default_factory=dict)
    #: Extra ``build_encoder`` arguments of both modes (e.g. ``{"fast_depthwise": False}``).
    encoder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: The original implementation's CCT step (low, high) in seconds on this setting, as quoted in issue #10
    #: (2-core CPU, ResNet-50 + PSP, crop 160, 2 + 2); ``None`` where there is no such figure.
    reference_s_per_step: tuple[float, float] | None = None


#: CCT / supervised limits of issue #10 (paper's 30 auxiliary decoders): time and peak memory.
TARGETS: dict[str, float] = {"time": 1.1, "peak_memory": 1.1}
#: How much faster than the original implementation a CCT step must be (issue #10), by device type.
SPEEDUP_TARGETS: dict[str, float] = {"cpu": 1.25, "cuda": 2.0}
_ORIGINAL_CPU_R50 = (3.3, 4.3)


WORKLOADS: dict[str, Workload] = {
    "cuda": Workload("cuda", "timm:resnet50", (321, 321), 8, amp="bf16"),
    "cpu": Workload("cpu", "timm:resnet18", (160, 160), 2),
    "cpu-r50": Workload("cpu-r50", "timm:resnet50", (160, 160), 2, reference_s_per_step=_ORIGINAL_CPU_R50),
    "cpu-r50-bf16": Workload(
        "cpu-r50-bf16", "timm:resnet50", (160, 160), 2, amp="bf16", reference_s_per_step=_ORIGINAL_CPU_R50
    ),
    # configs/study/camvid-cpu.yaml's model and full-CCT decoders.
    "camvid-cpu": Workload(
        "camvid-cpu",
        "timm:resnet10t",
        (72, 96),
        4,
        classes=11,
        amp="auto",
        psp_channels=64,
        perturbations=dict(CPU_PERTURBATIONS),
    ),
    # configs/study/camvid-pretrained.yaml's model (EfficientNet-Lite0 at output stride 8, PSP 512) and
    # decoders, and the same with PyTorch's own depthwise kernels, to compare (cct_train.models.depthwise).
    "camvid-pretrained": Workload(
        "camvid-pretrained",
        "timm:tf_efficientnet_lite0",
        (72, 96),
        4,
        classes=11,
        amp="auto",
        perturbations=dict(CPU_PERTURBATIONS),
    ),
}
WORKLOADS["camvid-pretrained-native-dw"] = replace(
    WORKLOADS["camvid-pretrained"],
    name="camvid-pretrained-native-dw",
    encoder_kwargs={"fast_depthwise": False},
)
#: The workload ``cct bench`` runs when none is named, by device type.
DEFAULT_WORKLOADS: dict[str, str] = {"cuda": "cuda", "cpu": "cpu-r50"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the high-water mark)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return _maxrss_mb()


def _maxrss_mb() -> float:
    """The process's resident-set high-water mark (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if platform.system() == "Darwin" else maxrss / 2**10


def _batch(work: Workload, device: torch.device) -> dict[str, torch.Tensor]:
    """The same B labeled + B unlabeled images for every process (seeded)."""
    g = torch.Generator().manual_seed(0)
    height, width = work.size
    b = work.batch
    return {
        "images": torch.randn(b, 3, height, width, generator=g).to(device),
        "targets": torch.randint(0, work.classes, (b, height, width), generator=g).to(device),
        "unlabeled": torch.randn(b, 3, height, width, generator=g).to(device),
        "unlabeled_targets": torch.randint(0, work.classes, (b, height, width), generator=g).to(device),
    }


def _bench_model(work: Workload, cct: bool, dev: torch.device) -> tuple[Any, torch.optim.Optimizer]:
    """The model of one mode (the supervised floor: no perturbations, so no auxiliary decoders) and its SGD."""
    from cct_train.models.cct import CCTModel

    model = CCTModel(
        work.encoder,
        work.classes,
        perturbations=dict(work.perturbations) if cct else {},
        psp_channels=work.psp_channels,
        output_stride=work.output_stride,
        encoder_kwargs=dict(work.encoder_kwargs),
    )
    if cct:
        for key, value in work.model_attrs.items():
            setattr(model, key, value)
    model = model.to(dev).train()
    return model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def _step_inputs(
    data: dict[str, torch.Tensor], cct: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images, targets and unlabeled images of one mode's step: B + B for CCT, 2B labeled for the floor."""
    if cct:
        return data["images"], data["targets"], data["unlabeled"]
    # the floor: the same encoder work, 2B labeled images
    images = torch.cat([data["images"], data["unlabeled"]])
    targets = torch.cat([data["targets"], data["unlabeled_targets"]])
    return images, targets, None


def _memory_base(dev: torch.device) -> float:
    """MB in use before the first step, subtracted from the peak to give what the step itself adds."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev) / 2**20
    return _rss_mb()


def _memory_peak(dev: torch.device) -> float:
    """MB at the high-water mark: allocated on CUDA, the process's resident set on CPU."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return _maxrss_mb()


def _time_steps(
    step: Callable[[], None], dev: torch.device, steps: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Wall and process CPU seconds of each timed step (after ``warmup`` untimed ones)."""
    for _ in range(warmup):
        step()
    _sync(dev)
    walls, cpus = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(dev)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def _measure(
    work: Workload, mode: str, device: str, steps: int, warmup: int, extras: bool, threads: int | None = None
) -> dict[str, Any]:
    """One (mode, round) measurement; meant to run in its own process (see the module docstring)."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    data = _batch(work, dev)
    cct = mode == "cct"
    model, optimizer = _bench_model(work, cct, dev)
    images, targets, unlabeled = _step_inputs(data, cct)

    def step() -> None:
        with _autocast(work, dev):
            out = model(images, targets, unlabeled=unlabeled, consistency_weight=1.0)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    base = _memory_base(dev)
    walls, cpus = _time_steps(step, dev, steps, warmup)
    peak = _memory_peak(dev)
    result: dict[str, Any] = {
        "mode": mode,
        "labeled": int(images.shape[0]),
        "unlabeled": 0 if unlabeled is None else int(unlabeled.shape[0]),
        "aux_decoders": model.num_aux_decoders,
        "s_per_step": statistics.median(walls),
        "cpu_s_per_step": statistics.median(cpus),
        "peak_memory_mb": peak,
        "step_memory_mb": peak - base,
    }
    if extras:
        result["gflop_per_step"] = _count_flops(step) / 1e9
    if extras and cct:
        result["perturbations_ms"] = _perturbation_times(model, data["unlabeled"], dev, work, steps)
        both = torch.cat([data["images"], data["unlabeled"]])
        result["inference_images_per_s"] = _inference(model, both, dev, work, steps)
    return result


def _count_flops(step: Callable[[], None]) -> int:
    """Floating-point operations of one call of ``step`` (forward + backward; convolutions, matrix products).

    Run after the timed steps (the counter's bookkeeping must not be timed) and after the memory readings.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def _time(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _autocast(work: Workload, dev: torch.device) -> torch.autocast:
    dtype = torch.float16 if work.amp == "fp16" else torch.bfloat16
    return torch.autocast(dev.type, dtype=dtype, enabled=work.amp != "no")


def _inference(model: Any, images: torch.Tensor, dev: torch.device, work: Workload, steps: int) -> float:
    """Main-path images per second (eval mode, no grad)."""
    model.eval()
    with torch.no_grad(), _autocast(work, dev):
        seconds = _time(partial(model, images), dev, steps)
    model.train()
    return float(images.shape[0] / seconds)


def _perturbation_times(
    model: Any, unlabeled: torch.Tensor, dev: torch.device, work: Workload, steps: int
) -> dict[str, float]:
    """Each perturbation type alone on the encoder output z of the unlabeled batch (ms per call)."""
    with torch.no_grad(), _autocast(work, dev):
        z = model.encode(unlabeled)
        pred = model.main_decoder(z)
    times: dict[str, float] = {}
    for name, module, decoder in model.perturbation_instances():
        if name in times:
            continue
        if module.inputs == "features":
            fn: Callable[[], Any] = partial(module, z)
        elif module.inputs == "prediction":
            fn = partial(module, z, pred)
        elif getattr(model, "fuse_aux_decoders", False):
            # VAT differentiates through its decoder (gradients on, as in training), which the model runs
            # as GEMMs in sub-pixel order when fuse_aux_decoders is on.
            rows = SubPixelRows(decoder)
            main_rows = rows.target(pred) if getattr(module, "target", "main") == "main" else None
            fn = partial(module, z, rows, main_rows)
        else:
            fn = partial(module, z, decoder, pred)
        with _autocast(work, dev):
            times[name] = 1000 * _time(fn, dev, steps)
    return times


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _resolve_workload(workload: str | Workload | None, dev: torch.device) -> Workload:
    """The named (or the device's default) workload; refuses an unknown name with the known ones."""
    if workload is None:
        workload = DEFAULT_WORKLOADS.get(dev.type, "cpu")
    if isinstance(workload, str):
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; known: {sorted(WORKLOADS)}")
        return WORKLOADS[workload]
    return workload


def _requested_precision(work: Workload, precision: str | None, dev: torch.device) -> str:
    """``precision`` or the workload's; fp16 means nothing on CPU, so there it asks for float32."""
    requested = precision or work.amp
    if dev.type == "cpu" and requested == "fp16":
        requested = "no"
    return requested


def _run_rounds(
    work: Workload, dev: torch.device, steps: int, warmup: int, rounds: int, threads: int, subprocess: bool
) -> list[dict[str, Any]]:
    """The raw per-process rows, supervised and CCT alternating so a slow spell of the machine hits both;
    the extras (FLOPs, perturbations, inference) in the first round only."""
    raw: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    for r in range(rounds):
        for mode in ("supervised", "cct"):
            args = (work, mode, str(dev), steps, warmup, r == 0, threads)
            if subprocess:
                with ctx.Pool(1) as pool:
                    row = pool.apply(_measure, args)
            else:
                before = torch.get_num_threads()
                try:
                    row = _measure(*args)
                finally:
                    torch.set_num_threads(before)
            row["round"] = r
            raw.append(row)
    return raw


def _mode_rows(raw: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    return [x for x in raw if x["mode"] == mode]


def _mode_summary(mode: str, mine: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``train_steps`` row: times are medians over rounds, memory the worst round."""
    images = mine[0]["labeled"] + mine[0]["unlabeled"]
    seconds = statistics.median(x["s_per_step"] for x in mine)
    return {
        "mode": mode,
        "labeled": mine[0]["labeled"],
        "unlabeled": mine[0]["unlabeled"],
        "aux_decoders": mine[0]["aux_decoders"],
        "s_per_step": seconds,
        "cpu_s_per_step": statistics.median(x["cpu_s_per_step"] for x in mine),
        "images_per_s": images / seconds,
        "peak_memory_mb": max(x["peak_memory_mb"] for x in mine),
        "step_memory_mb": max(x["step_memory_mb"] for x in mine),
        "gflop_per_step": mine[0].get("gflop_per_step", float("nan")),
    }


def _ratios(raw: list[dict[str, Any]], summary: list[dict[str, Any]]) -> dict[str, float]:
    """CCT / supervised: times as medians of the per-round ratios (each round's pair ran back to back)."""
    pairs = list(zip(_mode_rows(raw, "supervised"), _mode_rows(raw, "cct"), strict=True))
    return {
        "time": statistics.median(_ratio(c["s_per_step"], s["s_per_step"]) for s, c in pairs),
        "cpu_time": statistics.median(_ratio(c["cpu_s_per_step"], s["cpu_s_per_step"]) for s, c in pairs),
        "peak_memory": _ratio(summary[1]["peak_memory_mb"], summary[0]["peak_memory_mb"]),
        "step_memory": _ratio(summary[1]["step_memory_mb"], summary[0]["step_memory_mb"]),
        "flops": _ratio(summary[1]["gflop_per_step"], summary[0]["gflop_per_step"]),
    }


def _targets(
    ratios: dict[str, float], cct_s_per_step: float, work: Workload, dev: torch.device
) -> dict[str, Any]:
    """Each limit of :data:`TARGETS` against its ratio, and the speed-up over the original's quoted figure
    where the workload has one."""
    targets: dict[str, Any] = {
        name: {"limit": limit, "value": ratios[name], "met": bool(ratios[name] <= limit)}
        for name, limit in TARGETS.items()
    }
    if work.reference_s_per_step is not None:
        low, high = work.reference_s_per_step
        limit = SPEEDUP_TARGETS.get(dev.type, SPEEDUP_TARGETS["cpu"])
        targets["vs_original"] = {
            "original_s_per_step": [low, high],
            "speedup": [low / cct_s_per_step, high / cct_s_per_step],
            "limit": limit,
            "met": bool(low / cct_s_per_step >= limit),
        }
    return targets


def _analysis(raw: list[dict[str, Any]], work: Workload, dev: torch.device) -> dict[str, Any]:
    """The results' measured part, from the raw rows: summary, ratios, targets, first-round extras."""
    summary = [_mode_summary(mode, _mode_rows(raw, mode)) for mode in ("supervised", "cct")]
    ratios = _ratios(raw, summary)
    first_cct = _mode_rows(raw, "cct")[0]
    return {
        "train_steps": summary,
        "cct_over_supervised": ratios,
        "targets": _targets(ratios, summary[1]["s_per_step"], work, dev),
        "perturbations_ms": first_cct.get("perturbations_ms", {}),
        "inference_images_per_s": first_cct.get("inference_images_per_s", float("nan")),
        "rounds": raw,
    }


def _workload_json(work: Workload) -> dict[str, Any]:
    """The workload as plain JSON types (tuples and mappings would not round-trip)."""
    workload_json = asdict(work)
    workload_json["size"] = list(work.size)
    workload_json["perturbations"] = dict(work.perturbations)
    workload_json["model_attrs"] = dict(work.model_attrs)
    workload_json["encoder_kwargs"] = dict(work.encoder_kwargs)
    return workload_json


def _machine(
    dev: torch.device, requested: str, choice: PrecisionChoice, thread_choice: ThreadChoice
) -> dict[str, Any]:
    """What the figures depend on besides the workload: the device, CPU, precision, torch and threads."""
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_info().model,
        "device_description": device_description(dev),
        "cpu": cpu_info().to_dict(),
        "precision": {"requested": requested, "used": choice.precision, "reason": choice.reason},
        "torch": torch.__version__,
        "threads": thread_choice.threads,
        "threads_reason": thread_choice.reason,
    }


def _write_json(results: dict[str, Any], json_out: Path, quiet: bool) -> None:
    json_out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_out, json.dumps(results, indent=2))
    if not quiet:
        console.print(f"written to {json_out}")


def run_bench(
    device: str | None = None,
    json_out: Path | None = None,
    steps: int = 3,
    *,
    workload: str | Workload | None = None,
    rounds: int = 2,
    warmup: int = 1,
    subprocess: bool = True,
    quiet: bool = False,
    threads: int | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Run one workload: supervised (2B) and CCT (B + B) steps, alternated ``rounds`` times.

    Args:
        device: ``"cpu"`` / ``"cuda"`` (default: cuda when present).
        json_out: write the results there as JSON.
        steps: timed steps per process (after ``warmup`` untimed ones).
        workload: a name of :data:`WORKLOADS` or a :class:`Workload` (default:
            :data:`DEFAULT_WORKLOADS`: ``"cuda"`` on a GPU, else ``"cpu-r50"``).
        rounds: supervised / CCT process pairs; ratios are medians over rounds.
        subprocess: one fresh spawned process per measurement (needed for a per-workload peak RSS on
            CPU); ``False`` runs in this process (tests; the CPU memory figures are then meaningless).
        quiet: do not print the tables.
        threads: ``torch.set_num_threads`` in each measuring process (default: chosen from the free
            cores, :func:`cct_train.engine.hardware.choose_threads`). On a CPU shared with other jobs, 1 thread gives
            far steadier figures: with 2 OpenMP threads on 2 busy cores, each parallel region waits for the
            descheduled thread, and both wall and CPU time swing 2-5x.
        precision: ``auto``, ``fp32`` (``no``), ``bf16`` or ``fp16`` instead of the workload's own
            (:func:`cct_train.engine.hardware.resolve_precision`).

    Returns:
        the results (also written to ``json_out``): ``workload``, ``device``, ``train_steps`` (one row per
        mode, medians over rounds), ``rounds`` (raw per-process rows), ``cct_over_supervised`` (ratios of
        ``time``, ``cpu_time``, ``peak_memory``, ``step_memory``, ``flops``: the compute floor),
        ``targets`` (each limit of :data:`TARGETS` with the measured ratio and whether it is met; plus
        ``vs_original`` where the workload has a reference figure), ``perturbations_ms``,
        ``inference_images_per_s``, ``load_average`` (before / after), ``precision`` (requested, used,
        reason), ``cpu`` (model, torch capability, bf16 instructions, oneDNN bf16, native bf16),
        ``device_description``, ``threads`` and ``threads_reason``.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work = _resolve_workload(workload, dev)
    requested = _requested_precision(work, precision, dev)
    choice = resolve_precision(requested, dev)
    work = replace(work, amp=choice.precision)
    thread_choice = choose_threads(1, requested=threads)
    if not quiet:
        console.print(f"{device_description(dev)}: {choice.describe()}; {thread_choice.describe()}")
    load_before = os.getloadavg()
    raw = _run_rounds(work, dev, steps, warmup, rounds, thread_choice.threads, subprocess)
    load_after = os.getloadavg()
    results: dict[str, Any] = {
        "workload": _workload_json(work),
        **_machine(dev, requested, choice, thread_choice),
        "steps": steps,
        "rounds_count": rounds,
        "subprocess": subprocess,
        "load_average": {"before": list(load_before), "after": list(load_after)},
        **_analysis(raw, work, dev),
    }
    if not quiet:
        _print(results)
    if json_out is not None:
        _write_json(results, json_out, quiet)
    return results


def _targets_line(targets: dict[str, Any], flops: float) -> str:
    """The issue's targets as one line of rich markup: each ratio, its limit and whether it is met."""

    def mark(met: bool) -> str:
        return "[green]met[/]" if met else "[red]not met[/]"

    parts = [
        f"{name.replace('_', ' ')} {t['value']:.2f}x <= {t['limit']}x {mark(t['met'])}"
        for name, t in targets.items()
        if name in TARGETS
    ]
    line = f"targets (CCT / supervised; compute floor {flops:.3f}x): " + ", ".join(parts)
    vs = targets.get("vs_original")
    if vs is not None:
        low, high = vs["original_s_per_step"]
        fast_low, fast_high = vs["speedup"]
        line += (
            f"\nvs the original's {low}-{high} s/step (quoted in issue #10 from another machine, never run "
            f"here: not a side-by-side measurement): {fast_low:.2f}-{fast_high:.2f}x, "
            f">= {vs['limit']}x {mark(vs['met'])}"
        )
    return line


def _title(results: dict[str, Any]) -> str:
    """The table's title: the workload and the conditions, so a pasted table says what it measured."""
    work = results["workload"]
    b = work["batch"]
    load = results["load_average"]
    return (
        f"cct bench \\[{work['name']}] on {results['device_description']}: {work['encoder']} "
        f"{work['size'][0]}x{work['size'][1]}, CCT {b}+{b} vs supervised {2 * b}, "
        f"{PRECISION_LABELS.get(work['amp'], work['amp'])}, "
        f"{results['threads']} threads, {results['rounds_count']} rounds x {results['steps']} steps, load {load['before'][0]:.2f} -> "
        f"{load['after'][0]:.2f}"
    )


def _steps_table(results: dict[str, Any]) -> Table:
    """One row per mode, then the CCT / supervised ratios and the main path's inference throughput."""
    table = Table(title=_title(results))
    columns = [
        "step",
        "images",
        "aux dec.",
        "s/step",
        "cpu s/step",
        "images/s",
        "peak MB",
        "step MB",
        "GFLOP",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["train_steps"]:
        table.add_row(
            row["mode"],
            f"{row['labeled']}+{row['unlabeled']}",
            str(row["aux_decoders"]),
            f"{row['s_per_step']:.3f}",
            f"{row['cpu_s_per_step']:.3f}",
            f"{row['images_per_s']:.2f}",
            f"{row['peak_memory_mb']:.0f}",
            f"{row['step_memory_mb']:.0f}",
            f"{row['gflop_per_step']:.1f}",
        )
    ratio = results["cct_over_supervised"]
    table.add_section()
    table.add_row(
        "CCT / supervised",
        "",
        "",
        f"{ratio['time']:.2f}x",
        f"{ratio['cpu_time']:.2f}x",
        "",
        f"{ratio['peak_memory']:.2f}x",
        f"{ratio['step_memory']:.2f}x",
        f"{ratio['flops']:.3f}x",
    )
    table.add_row(
        "inference (main path)", "", "", "", "", f"{results['inference_images_per_s']:.2f}", "", "", ""
    )
    return table


def _perturbations_table(results: dict[str, Any]) -> Table:
    perturb = Table(title="perturbations alone (ms per call on the unlabeled batch's z)", min_width=64)
    perturb.add_column("perturbation")
    perturb.add_column("ms", justify="right")
    for name, ms in results["perturbations_ms"].items():
        perturb.add_row(name, f"{ms:.2f}")
    return perturb


def _print(results: dict[str, Any]) -> None:
    # Not a terminal (nox, CI, a log file): rich would fold the table to 80 columns.
    out = console if console.is_terminal else Console(width=130)
    out.print(_steps_table(results))
    precision = results["precision"]
    out.print(
        f"precision: {PRECISION_LABELS.get(precision['used'], precision['used'])} ({precision['reason']})"
    )
    out.print(f"threads: {results['threads']} ({results['threads_reason']})")
    out.print(_targets_line(results["targets"], results["cct_over_supervised"]["flops"]))
    out.print(_perturbations_table(results))
