"""The `cct` command line (Typer + rich)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cct_train.cli.common import CCTTyper, ConfigOpt, SetOpt, console, err, fail, load
from cct_train.cli.study import study
from cct_train.cli.weak import cam_app, pseudo_labels
from cct_train.cli.weights import weights_app
from cct_train.common.atomic import atomic_write_text

if TYPE_CHECKING:
    from cct_train.config import Config

app = CCTTyper(
    name="cct",
    help="Cross-Consistency Training for semi-supervised semantic segmentation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


DomainOpt = Annotated[
    str | None,
    typer.Option("--domain", "-d", help="Domain of a multi-domain model (its label space)."),
]


def print_scores(scores: dict, title: str = "Evaluation") -> None:  # type: ignore[type-arg]
    """A rich table of per-class IoU, then mIoU and pixel accuracy (per domain, then their mean, for a
    multi-domain model)."""
    if "domains" in scores:
        for name, domain_scores in scores["domains"].items():
            print_scores(domain_scores, escape(f"{title} [{name}]"))
        means = ", ".join(f"{name} {100 * s['miou']:.2f}" for name, s in scores["domains"].items())
        console.print(f"[bold]mean mIoU over domains: {100 * scores['miou']:.2f}[/] ({means})")
        return
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, value in scores["per_class_iou"].items():
        table.add_row(name, "—" if value is None else f"{100 * value:.2f}")
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{100 * scores['miou']:.2f}")
    table.add_row("pixel accuracy", f"{100 * scores['pixel_accuracy']:.2f}")
    console.print(table)


@app.command()
def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Checkpoint to resume from, or 'auto' for <output_dir>/checkpoints/last.pt."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Build config, data, model and one batch of each loader; print a summary; train nothing.",
        ),
    ] = False,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            "-d",
            help="Train only this domain of a multi-domain config (its single-domain baseline, same settings).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the trained run that experiment.output_dir holds (default: refuse and say so).",
        ),
    ] = False,
) -> None:
    """Train CCT (or the supervised baseline with train.mode=supervised) from a config.

    A config with `domains` trains one shared encoder with a head per domain (multi-domain CCT).
    The run folder is locked while it trains; a trained run in it is continued (--resume auto), never
    replaced unless --overwrite says so.
    """
    from cct_train.common.checkpoint import CheckpointError
    from cct_train.common.rundir import RunFolderError, RunFolderLock, refuse_to_replace
    from cct_train.engine.trainer import NonFiniteLossError, Trainer, TrainingInterrupted

    cfg = load(config, set_)
    if config is None and all(view.data.root is None for _, view in cfg.domain_views()):
        fail(
            "no config given and data.root is not set: pass one with -c, e.g. "
            "`cct train -c configs/camvid-cct.yaml --set data.root=/path/to/camvid` (configs/ has ready ones; "
            "README 'Train on your own images' writes one for a folder of images)"
        )
    if domain is not None:
        views = dict(cfg.domain_views())
        if not cfg.multi_domain or domain not in views:
            fail(
                f"--domain {domain!r}: the config's domains are {list(views) if cfg.multi_domain else 'none'}"
            )
        cfg = views[domain]
    if dry_run:
        _dry_run(cfg, config)
        return
    output_dir = Path(cfg.experiment.output_dir)
    try:
        # The folder's lock and what it holds are settled first: a second run or a finished run in the
        # way is said at once, not after the data check and the model build.
        with RunFolderLock(output_dir):
            checkpoint: Path | None = None
            if resume is not None:
                checkpoint = output_dir / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
                if not checkpoint.is_file():
                    if resume != "auto":
                        fail(f"checkpoint not found: {checkpoint}")
                    console.print(f"--resume auto: no checkpoint at {checkpoint}; starting from scratch")
                    checkpoint = None
            continues = checkpoint is not None and checkpoint.resolve().is_relative_to(output_dir.resolve())
            if not continues and not overwrite:
                refuse_to_replace(output_dir)
            trainer = Trainer(cfg, overwrite=overwrite)
            if checkpoint is not None:
                trainer.resume(checkpoint)
                console.print(f"resumed from {checkpoint} at step {trainer.step}")
            result = trainer.fit()
    except TrainingInterrupted as stop:
        err.print(f"[bold yellow]stopped:[/] {stop}")
        raise typer.Exit(code=128 + stop.signum) from None
    except (NonFiniteLossError, CheckpointError, RunFolderError, FileNotFoundError, ValueError) as error:
        fail(str(error))
        return
    except OSError as error:  # a log or a record that could not be written (a full disk...)
        fail(
            f"could not write {error.filename or output_dir}: {error.strerror or error}. Checkpoints are "
            "written atomically, so the last one is intact: free disk space (or make the folder writable), "
            "then continue with --resume auto."
        )
    if trainer.accelerator.is_main_process:
        if result.metrics:
            print_scores(result.metrics, f"{cfg.experiment.name}: validation at step {result.step}")
        console.print(f"outputs in [bold]{result.output_dir}[/] ({result.seconds:.0f} s)")


def _dry_run(cfg: Config, path: Path | None) -> None:
    from cct_train.tools.dry_run import dry_run

    try:
        report = dry_run(cfg)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError, KeyError) as error:
        fail(f"dry run failed: {error}")
    table = Table(title=f"dry run: {path or 'default config'}")
    table.add_column("part")
    table.add_column("built")
    for part, detail in report.rows:
        table.add_row(escape(part), escape(detail))
    console.print(table)
    console.print(
        f"[bold green]ok[/] in {report.seconds:.1f} s: one forward + backward step ran, no weight was "
        "updated, nothing was written"
    )


def _size(text: str | None, option: str) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        fail(f"{option} must look like HxW (e.g. 512x1024), got {text!r}")
    if height < 1 or width < 1:
        fail(f"{option} must be positive, got {text!r}")
    return height, width


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint or exported .safetensors weights.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    split: Annotated[
        str | None, typer.Option(help="Split to evaluate (default: the config's val split).")
    ] = None,
    scales: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated test scales, e.g. 0.5,0.75,1,1.25,1.5,1.75 (default: eval.scales)."
        ),
    ] = None,
    flip: Annotated[
        bool | None,
        typer.Option("--flip/--no-flip", help="Average with horizontal flips (default: eval.flip)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Sliding-window size HxW for large images, e.g. 512x1024 (default: eval.window)."),
    ] = None,
    stride: Annotated[
        str | None,
        typer.Option(help="Sliding-window stride HxW (default: eval.stride or 2/3 of the window)."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores as JSON here.")] = None,
    domain: DomainOpt = None,
) -> None:
    """Evaluate a trained model: mIoU over the classes (void ignored), per-class IoU, pixel accuracy.

    Single-scale by default; multi-scale + flip with --scales / --flip; --window for a sliding window.
    Defaults come from the config's eval section. A multi-domain model is evaluated on every domain (each
    one's table and the mean mIoU) or on --domain only.
    """
    from cct_train.eval.inference import evaluate_checkpoint

    try:
        scale_list = [float(v) for v in scales.split(",")] if scales is not None else None
    except ValueError:
        fail(f"--scales must be comma-separated numbers, got {scales!r}")
    try:
        scores = evaluate_checkpoint(
            checkpoint,
            config_path=config,
            overrides=set_ or [],
            split=split,
            scales=scale_list,
            flip=flip,
            window=_size(window, "--window"),
            stride=_size(stride, "--stride"),
            domain=domain,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        fail(str(error))
        return
    print_scores(scores, f"{checkpoint.name}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(scores, indent=2))
        console.print(f"scores written to {json_out}")


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint or exported .safetensors weights.")],
    inputs: Annotated[Path, typer.Argument(help="An image file or a folder of images.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for index PNGs and overlays.")
    ] = Path("predictions"),
    size: Annotated[
        str | None,
        typer.Option(
            help="Resize inputs to HxW before the model (e.g. 360x480), or 'own' for each image's own size. "
            "Default: the resolution the model trained at (data.resize, stored in the checkpoint), else own."
        ),
    ] = None,
    overlay: Annotated[bool, typer.Option(help="Also write colour overlays.")] = True,
    domain: DomainOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace earlier predictions in the output folder.")
    ] = False,
) -> None:
    """Predict index PNGs (and colour overlays) for a folder of images.

    Each image's relative path is kept under the output folder, which must lie outside the input folder;
    existing files there are replaced only with --overwrite. A multi-domain model predicts in the label
    space of --domain (required for it).
    """
    from cct_train.eval.inference import predict_folder

    resize: tuple[int, int] | str | None = "trained"
    if size is not None:
        resize = None if size.strip().lower() in ("own", "native") else _size(size, "--size")
    try:
        written = predict_folder(
            checkpoint, inputs, output, resize=resize, overlay=overlay, domain=domain, overwrite=overwrite
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        fail(str(error))
        return
    console.print(f"{written} predictions written to [bold]{output}[/]")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint (or .safetensors weights).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .safetensors file to write.")],
    domain: DomainOpt = None,
) -> None:
    """Write inference weights (.safetensors with config and classes); with --domain, a standalone
    single-domain model (shared encoder + that domain's decoders) from a multi-domain checkpoint."""
    from cct_train.eval.inference import export_model

    try:
        path = export_model(checkpoint, output, domain=domain)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        fail(str(error))
    what = f"domain {domain!r}" if domain else "model"
    console.print(f"{what} exported to [bold]{path}[/]")


@app.command()
def splits(
    root: Annotated[Path, typer.Argument(help="Data set root.")],
    n_labeled: Annotated[int, typer.Option("--n-labeled", "-n", help="Number of labeled images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for labeled.txt / unlabeled.txt.")],
    dataset: Annotated[str, typer.Option(help="Data set kind: camvid, folder, horses...")] = "camvid",
    split: Annotated[str, typer.Option(help="Which split to divide.")] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
) -> None:
    """Draw a reproducible labeled / unlabeled split of a training set."""
    from cct_train.data import build_dataset, make_split, save_split

    try:
        ds = build_dataset(dataset, root=root, split=split)
        result = make_split(ds.names, n_labeled, seed, source=f"{dataset}:{root}:{split}")
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
        return
    save_split(result, output)
    console.print(
        f"{len(result.labeled)} labeled + {len(result.unlabeled)} unlabeled (seed {seed}) written to [bold]{output}[/]"
    )


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="A CamVid copy (SegNet layout) instead of the generated scenes.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where runs, predictions and plots go.")
    ] = Path("runs/demo"),
    iterations: Annotated[
        int | None, typer.Option(help="Training iterations (default: a few minutes).")
    ] = None,
    compare: Annotated[bool, typer.Option(help="Also train the supervised baseline and compare.")] = True,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Backbone, e.g. timm:resnet18 (random init). Default: ImageNet EfficientNet-Lite0 when "
            "cct-train[pretrained] is installed, else timm:resnet18."
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Weights for --encoder: a file or package:<name>.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: chosen from the free cores).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Runs trained at once (default: both side by side when there are 2 cores, else 1)."
        ),
    ] = None,
) -> None:
    """A short real CCT training + evaluation that needs no download (a few minutes on 2 CPU cores).
    Precision: bf16 autocast where it is native, float32 elsewhere; both choices are printed."""
    from cct_train.tools.demo import run_demo

    if weights is not None and encoder is None:
        fail("--weights needs --encoder (the default encoder brings its own weights)")
    run_demo(
        data=data,
        output=output,
        iterations=iterations,
        compare=compare,
        encoder=encoder,
        seed=seed,
        threads=threads,
        weights=weights,
        jobs=jobs,
    )


@app.command()
def bench(
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    workload: Annotated[
        str | None,
        typer.Option(
            help="cuda (r50 321px 8+8 bf16; default on a GPU), cpu-r50 (r50 160px 2+2; default on CPU), "
            "cpu-r50-bf16, cpu (r18 160px 2+2) or camvid-cpu (the CamVid CPU study's model, precision auto)."
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    steps: Annotated[int, typer.Option(help="Timed steps per process.")] = 3,
    rounds: Annotated[int, typer.Option(help="Supervised / CCT process pairs (ratios: medians).")] = 2,
    warmup: Annotated[int, typer.Option(help="Untimed steps per process.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch threads per process (default: chosen from the free cores; 1: steadier on a shared CPU).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (bf16 where native, else float32), fp32 or bf16, instead of the workload's own."
        ),
    ] = None,
) -> None:
    """CCT step (B+B) vs supervised step (2B): s/step, images/s, peak memory, ratio; perturbations; inference."""
    from cct_train.tools.bench import WORKLOADS, run_bench

    if workload is not None and workload not in WORKLOADS:
        fail(f"--workload: unknown workload {workload!r}; known: {', '.join(sorted(WORKLOADS))}")
    if precision is not None and precision not in ("auto", "fp32", "no", "bf16", "fp16"):
        fail(f"--precision: unknown precision {precision!r}; known: auto, fp32, bf16, fp16")
    run_bench(
        device=device,
        json_out=json_out,
        steps=steps,
        workload=workload,
        rounds=rounds,
        warmup=warmup,
        threads=threads,
        precision=precision,
    )


@app.command()
def encoders(
    pattern: Annotated[str | None, typer.Argument(help="Filter, e.g. '*resnet*'.")] = None,
    source: Annotated[str | None, typer.Option(help="timm or smp.")] = None,
) -> None:
    """List backbone names usable as model.encoder."""
    from cct_train.models.encoders import list_encoders

    names = list_encoders(source=source, pattern=pattern)
    for name in names:
        console.print(name)
    err.print(f"{len(names)} encoders")


app.add_typer(cam_app, name="cam")
app.add_typer(weights_app, name="weights")
app.command("pseudo-labels")(pseudo_labels)
app.command()(study)


data_app = typer.Typer(name="data", help="Check and prepare data sets.", no_args_is_help=True)
app.add_typer(data_app)


@data_app.command("check")
def data_check(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quick: Annotated[bool, typer.Option(help="List-level checks only (no decoding): fast.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes (default: min(4, CPU count)).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """Check the config's data: missing / unreadable / truncated files, masks, duplicates, empty sets.

    Every problem is listed with its file; exits 1 when any is fatal, 0 otherwise.
    """
    from cct_train.data.check import check_data, print_report

    cfg = load(config, set_)
    reports = {}
    for name, view in cfg.domain_views():
        if cfg.multi_domain:
            console.rule(f"domain {name}")
        reports[name] = check_data(view, deep=not quick, workers=workers, progress=True)
        print_report(reports[name], console)
    if json_out is not None:
        if cfg.multi_domain:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json_out, json.dumps({n: r.to_dict() for n, r in reports.items()}, indent=2))
        else:
            next(iter(reports.values())).write_json(json_out)
        console.print(f"report written to {json_out}")
    if any(r.fatal for r in reports.values()):
        raise typer.Exit(code=1)


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="voc, cityscapes, camvid or sunrgbd.")],
    root: Annotated[Path, typer.Option(help="The data set's folder (its official layout).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where split lists go (default: <root>/splits).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random subsets.")] = 0,
    force: Annotated[bool, typer.Option(help="Rewrite split lists that exist (default: keep them).")] = False,
    download: Annotated[
        bool, typer.Option(help="Fetch what is freely downloadable (VOC 2012, SBD) when online.")
    ] = False,
    image_labels: Annotated[
        bool, typer.Option(help="VOC: write image_labels.txt derived from the masks (decodes every mask).")
    ] = True,
) -> None:
    """Check a copy of a benchmark against its official layout and write the standard split lists.

    Exits 1 when required parts are missing, after saying exactly what to fetch and where to put it.
    """
    from cct_train.data.prepare import prepare_dataset

    try:
        report = prepare_dataset(
            name, root, output=output, seed=seed, force=force, download=download, image_labels=image_labels
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        fail(str(error))
    table = Table(title=f"{report.dataset} at {report.root}")
    table.add_column("part")
    table.add_column("found", justify="right")
    table.add_column("full copy", justify="right")
    table.add_column("status")
    table.add_column("path")
    colours = {"ok": "green", "incomplete": "yellow", "missing": "red"}
    for check in report.checks:
        status = check.status if check.required or check.status == "ok" else f"{check.status} (optional)"
        table.add_row(
            check.what,
            str(check.found),
            "—" if check.expected is None else str(check.expected),
            f"[{colours[check.status]}]{status}[/]",
            str(check.path),
        )
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    for path in report.written:
        console.print(f"wrote {path}")
    if report.kept:
        console.print(f"kept {len(report.kept)} existing split list(s) (--force rewrites them)")
    for item in report.fetch:
        err.print(f"[bold]fetch by hand:[/] {item}")
    if not report.usable:
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":
    app()
