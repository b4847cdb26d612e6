"""`cct cam train` and `cct pseudo-labels`: weak (image-level) labels to pseudo-labels (paper 3.3).

The commands only: their options, the checks typer cannot make, the messages. Both find their images through
the data section of a training config (:mod:`cct_train.weak.from_config`), so the pseudo-labels are named and
sized like the samples the trainer reads with ``data.pseudo_labels``. Heavy imports stay inside the commands,
as in :mod:`cct_train.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer

from cct_train.cli.common import ConfigOpt, SetOpt, console, err, fail, load

cam_app = typer.Typer(
    help="Classification branch for weak labels: train it, then turn its CAMs into pseudo-labels.",
    no_args_is_help=True,
    add_completion=False,
)
SplitOpt = Annotated[str | None, typer.Option(help="Data set split (default: data.train_split).")]
NamesOpt = Annotated[
    Path | None, typer.Option(help="Only these images: a text file with one sample name per line.")
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Image-level labels: CSV 'name,labels' (class names or indices separated by spaces or ';') "
        "or a text file 'name label label ...'."
    ),
]
FromMasksOpt = Annotated[
    bool, typer.Option("--from-masks", help="Derive the image-level labels from the masks (for testing).")
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")]


def _check_cam_options(labels: Path | None, from_masks: bool, output_stride: int, optimizer: str) -> None:
    """The option combinations typer cannot check, refused before the (slow) config and data loading."""
    if (labels is None) == (not from_masks):
        fail("give exactly one of --labels FILE and --from-masks")
    if output_stride not in (8, 16, 32):
        fail(f"--output-stride must be 8, 16 or 32, got {output_stride}")
    if optimizer not in ("sgd", "adamw"):
        fail(f"--optimizer must be sgd or adamw, got {optimizer!r}")


@cam_app.command("train")
def cam_train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for cam_classifier.pt.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    labels: LabelsOpt = None,
    from_masks: FromMasksOpt = False,
    split: SplitOpt = None,
    names: NamesOpt = None,
    iterations: Annotated[int, typer.Option(help="Training iterations.")] = 1000,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: data.batch_size).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Backbone (default: model.encoder).")] = None,
    output_stride: Annotated[int, typer.Option(help="Encoder output stride: 8 or 16 (or 32).")] = 16,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Encoder learning rate (the linear layer: x10).")] = 0.01,
    device: DeviceOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: experiment.seed).")] = None,
) -> None:
    """Train the CAM classifier (encoder + global average pooling + linear, multi-label BCE).

    Images come from the config's data section (crop_size, scale_range and hflip drive the augmentation);
    the encoder and its weights from model.encoder / model.pretrained / model.weights unless --encoder.
    """
    _check_cam_options(labels, from_masks, output_stride, optimizer)
    cfg = load(config, set_)
    from cct_train.weak import train_cam_from_config

    try:
        result = train_cam_from_config(
            cfg,
            output,
            labels,
            split,
            names,
            iterations=iterations,
            batch_size=batch_size,
            encoder=encoder,
            output_stride=cast(Literal[8, 16, 32], output_stride),  # checked above
            optimizer=cast(Literal["sgd", "adamw"], optimizer),
            lr=lr,
            device=device,
            seed=seed,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        fail(str(error))
    console.print(
        f"CAM classifier on {result.num_images} images, {result.iterations} iterations "
        f"(final loss {result.loss:.4f}, {result.seconds:.0f} s): [bold]{result.path}[/]"
    )


def _check_pseudo_options(labels: Path | None, from_masks: bool, crf: bool) -> None:
    """Refuses contradicting label sources, and the CRF without pydensecrf before any work."""
    if labels is not None and from_masks:
        fail("give at most one of --labels FILE and --from-masks")
    if crf:
        from cct_train.weak import require_crf

        try:
            require_crf()
        except ImportError as error:
            fail(str(error))


def _parse_scales(scales: str) -> list[float]:
    try:
        return [float(s) for s in scales.split(",") if s.strip()]
    except ValueError:
        fail(f"--scales must be comma-separated numbers, got {scales!r}")


def _print_pseudo_summary(report: dict[str, Any], output: Path) -> None:
    miou = report.get("miou")
    quality = f", mIoU {100 * miou:.2f} vs ground truth on labelled pixels" if miou is not None else ""
    console.print(
        f"{report['num_images']} pseudo-labels in [bold]{output}[/]: "
        f"{100 * report['ignore_fraction']:.1f}% ignored{quality}; see {output / 'report.json'}"
    )


def pseudo_labels(
    checkpoint: Annotated[Path, typer.Argument(help="cam_classifier.pt written by `cct cam train`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for <name>.png and report.json.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    split: SplitOpt = None,
    names: NamesOpt = None,
    unlabeled_only: Annotated[
        bool, typer.Option("--unlabeled-only", help="Only the config's unlabeled images (data.split).")
    ] = False,
    labels: LabelsOpt = None,
    from_masks: FromMasksOpt = False,
    label_threshold: Annotated[
        float, typer.Option(help="Without labels: classes with sigmoid score above this are present.")
    ] = 0.5,
    theta_bg: Annotated[float, typer.Option(help="All scores below: background.")] = 0.05,
    theta_fg: Annotated[float, typer.Option(help="Top score above: that class.")] = 0.30,
    background_index: Annotated[
        str, typer.Option(help="The background class, or 'none' (e.g. CamVid): low pixels are then ignored.")
    ] = "0",
    scales: Annotated[str, typer.Option(help="Comma-separated CAM scales.")] = "1,0.5,1.5,2",
    flip: Annotated[bool, typer.Option(help="Add horizontally flipped CAMs.")] = True,
    crf: Annotated[bool, typer.Option(help="Refine with a dense CRF (needs pydensecrf2).")] = True,
    workers: Annotated[int, typer.Option(help="CRF worker processes (0: in this process).")] = 2,
    batch_size: Annotated[int, typer.Option(help="Images per CAM batch.")] = 8,
    device: DeviceOpt = None,
) -> None:
    """Write pseudo-labels (index PNGs, 255 = ignored) and report.json from a CAM classifier."""
    _check_pseudo_options(labels, from_masks, crf)
    from cct_train.common.checkpoint import CheckpointError
    from cct_train.weak import generate_pseudo_labels, pseudo_label_inputs

    cfg = load(config, set_)
    scale_list = _parse_scales(scales)
    try:
        inputs = pseudo_label_inputs(cfg, checkpoint, split, names, unlabeled_only, labels, background_index)
        if inputs.note is not None:
            err.print(f"[yellow]note:[/] {inputs.note}")
        report = generate_pseudo_labels(
            inputs.classifier.model,
            inputs.dataset,
            output,
            class_names=inputs.classifier.class_names,
            normalization=inputs.classifier.normalization,
            palette=getattr(inputs.dataset, "palette", None),
            labels=inputs.labels,
            from_masks=from_masks,
            label_threshold=label_threshold,
            theta_bg=theta_bg,
            theta_fg=theta_fg,
            background_index=inputs.background,
            scales=scale_list,
            flip=flip,
            crf=crf,
            workers=workers,
            batch_size=batch_size,
            num_workers=cfg.data.num_workers,
            device=device,
            ignore_index=cfg.data.ignore_index,
            extra_report={"checkpoint": str(checkpoint)},
        )
    except (FileNotFoundError, ValueError, RuntimeError, ImportError, CheckpointError) as error:
        fail(str(error))
    _print_pseudo_summary(report, output)
