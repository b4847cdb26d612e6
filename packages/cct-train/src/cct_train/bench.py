"""`cct bench`: what a CCT step costs next to a supervised step, on whatever device is present.

Fixed, documented workloads (so figures from different machines compare):
- cuda: timm:resnet50, output stride 8, 321x321, batch 8 labeled + 8 unlabeled, 21 classes, bf16 autocast.
- cpu:  timm:resnet18, output stride 8, 160x160, batch 2 labeled + 2 unlabeled, 21 classes, fp32.
Both from random initialisation, the paper's 30 auxiliary decoders for the CCT step. Reported: seconds per
step, images per second, peak memory (CUDA allocator peak; on CPU the process's peak RSS, which only grows),
the CCT / supervised ratio, each perturbation alone, and main-path inference throughput.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cct_train.config import PAPER_PERTURBATIONS
from cct_train.model import CCTModel

console = Console()

WORKLOADS: dict[str, dict[str, Any]] = {
    "cuda": {"encoder": "timm:resnet50", "size": (321, 321), "batch": 8, "classes": 21, "amp": "bf16"},
    "cpu": {"encoder": "timm:resnet18", "size": (160, 160), "batch": 2, "classes": 21, "amp": "no"},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _time(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _train_step_fn(
    model: CCTModel, batch: dict[str, torch.Tensor], amp: str, device: torch.device
) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp != "no"):
            out = model(
                batch["images"], batch["targets"], unlabeled=batch.get("unlabeled"), consistency_weight=1.0
            )
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def run_bench(device: str | None = None, json_out: Path | None = None, steps: int = 5) -> dict[str, Any]:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work = WORKLOADS["cuda" if dev.type == "cuda" else "cpu"]
    torch.manual_seed(0)
    height, width = work["size"]
    batch, classes = work["batch"], work["classes"]
    images = torch.randn(batch, 3, height, width, device=dev)
    targets = torch.randint(0, classes, (batch, height, width), device=dev)
    unlabeled = torch.randn(batch, 3, height, width, device=dev)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "workload": {**work, "size": list(work["size"])},
        "steps": steps,
    }

    rows = []
    for mode, perturbations in [("supervised", {}), ("cct", dict(PAPER_PERTURBATIONS))]:
        model = CCTModel(work["encoder"], classes, perturbations=perturbations).to(dev).train()
        data = {"images": images, "targets": targets}
        if perturbations:
            data["unlabeled"] = unlabeled
        _reset_peak(dev)
        seconds = _time(_train_step_fn(model, data, work["amp"], dev), dev, steps)
        seen = batch * (2 if perturbations else 1)
        rows.append(
            {
                "mode": mode,
                "aux_decoders": model.num_aux_decoders,
                "s_per_step": seconds,
                "images_per_s": seen / seconds,
                "peak_memory_mb": _peak_memory_mb(dev),
            }
        )
        if mode == "cct":
            inference_model = model.eval()
            with torch.no_grad():
                inference = _time(partial(inference_model, images), dev, steps)
            results["inference_images_per_s"] = batch / inference
            results["perturbations_ms"] = _perturbation_times(model, images, dev, steps)
        del model
    results["train_steps"] = rows
    results["cct_over_supervised"] = rows[1]["s_per_step"] / rows[0]["s_per_step"]
    _print(results)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2))
        console.print(f"written to {json_out}")
    return results


@torch.no_grad()
def _perturbation_times(
    model: CCTModel, images: torch.Tensor, dev: torch.device, steps: int
) -> dict[str, float]:
    """Each perturbation type alone on the encoder output z of the benchmark batch (milliseconds)."""
    z = model.encode(images)
    pred = model.main_decoder(z)
    times: dict[str, float] = {}
    for name, module, decoder in model.perturbation_instances():
        if name in times:
            continue
        if module.inputs == "features":
            fn: Callable[[], Any] = partial(module, z)
        elif module.inputs == "prediction":
            fn = partial(module, z, pred)
        else:
            fn = partial(_with_grad, module, z, decoder, pred)
        times[name] = 1000 * _time(fn, dev, steps)
    return times


def _with_grad(module: Callable[..., Any], *args: Any) -> Any:
    # VAT differentiates through its decoder even when the caller runs without gradients.
    with torch.enable_grad():
        return module(*args)


def _print(results: dict[str, Any]) -> None:
    work = results["workload"]
    table = Table(
        title=f"cct bench on {results['device']}: {work['encoder']} {work['size'][0]}x{work['size'][1]}, "
        f"batch {work['batch']}+{work['batch']}, amp {work['amp']}"
    )
    for column in ["step", "aux decoders", "s/step", "images/s", "peak MB"]:
        table.add_column(column, justify="right")
    for row in results["train_steps"]:
        table.add_row(
            row["mode"],
            str(row["aux_decoders"]),
            f"{row['s_per_step']:.3f}",
            f"{row['images_per_s']:.1f}",
            f"{row['peak_memory_mb']:.0f}",
        )
    table.add_section()
    table.add_row("CCT / supervised", "", f"{results['cct_over_supervised']:.2f}x", "", "")
    table.add_row("inference", "", "", f"{results['inference_images_per_s']:.1f}", "")
    console.print(table)
    perturb = Table(title="perturbations alone (ms per call on the batch's z)")
    perturb.add_column("perturbation")
    perturb.add_column("ms", justify="right")
    for name, ms in results["perturbations_ms"].items():
        perturb.add_row(name, f"{ms:.2f}")
    console.print(perturb)
