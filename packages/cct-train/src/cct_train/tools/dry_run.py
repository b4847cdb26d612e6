"""`cct train --dry-run`: build everything a run needs, load one batch of each loader, run one real forward
and backward step (as Lightning's ``fast_dev_run``), update nothing.

It catches in seconds what would otherwise fail minutes into a run: a wrong data root or split list, a
label space that does not match ``data.num_classes``, images that cannot be batched, an unknown encoder,
an encoder that cannot take the crops (a ViT built for 224x224), a step that does not fit in memory.
Loading happens in this process (``num_workers`` 0); no weight is updated and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from cct_train.config import Config, config_from_dict
from cct_train.models.batch import TrainBatch

if TYPE_CHECKING:
    from cct_train.data.build import TrainingData

#: Labeled (and unlabeled) images of the dry run's training step on a CPU (a GPU takes the whole batch).
CPU_STEP_IMAGES = 2


@dataclass
class DryRunReport:
    """What a dry run built: rows of (part, detail) for the summary table."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, part: str, detail: str) -> None:
        self.rows.append((part, detail))


def _shape(batch: dict[str, Any], key: str) -> str:
    value = batch.get(key)
    return "x".join(str(v) for v in value.shape) if isinstance(value, torch.Tensor) else "—"


def _batch(loader: Any) -> dict[str, Any]:
    return dict(next(iter(loader)))


def dry_run(config: Config) -> DryRunReport:
    """Build config, data sets, loaders (one batch each, augmented for the training streams) and model.

    A multi-domain config gets the data rows of each domain (prefixed with its name) and one model.
    Raises what building raises (FileNotFoundError, ValueError, RuntimeError ...) with its message.
    """
    from cct_train.engine.trainer import build_model

    start = time.perf_counter()
    report = DryRunReport()
    raw = config.to_dict()
    for data in [raw.get("data") or {}, *(d["data"] for d in raw.get("domains") or [])]:
        data["num_workers"] = 0
    cfg = config_from_dict(raw, "dry run")
    report.add(
        "experiment", f"{cfg.experiment.name} -> {cfg.experiment.output_dir} (seed {cfg.experiment.seed})"
    )
    num_classes: dict[str, int] = {}
    batches: dict[str, TrainBatch] = {}
    for name, view in cfg.domain_views():
        prefix = f"[{name}] " if cfg.multi_domain else ""
        try:
            num_classes[name], batches[name] = _data_rows(report, view, prefix)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
            if not cfg.multi_domain:
                raise
            raise type(error)(f"domain {name!r}: {error}") from error
    model = build_model(cfg, num_classes)  # loads the weights file / downloads the weights when asked
    report.add("model", _model_row(cfg, model))
    report.add("one training step", _one_step(cfg, model, batches))
    _settings_rows(report, cfg)
    report.seconds = time.perf_counter() - start
    return report


def _model_row(cfg: Config, model: Any) -> str:
    """The model's row: encoder and output stride, parameters, auxiliary decoders (per domain)."""
    params = sum(p.numel() for p in model.parameters())
    counts = {
        name: 0 if view.supervised_only else sum(view.model.perturbations.values())
        for name, view in cfg.domain_views()
    }
    decoders = (
        ", ".join(f"{name} {k}" for name, k in counts.items())
        if cfg.multi_domain
        else str(sum(counts.values()))
    )
    shared = f"shared by {len(counts)} domains ({cfg.train.domain_sampling}), " if cfg.multi_domain else ""
    stride = f"OS{model.output_stride}"
    if model.output_stride != cfg.model.output_stride:
        stride += f" (model.output_stride {cfg.model.output_stride} is not possible with this encoder)"
    return f"{cfg.model.encoder} {stride}, {shared}{params / 1e6:.1f} M parameters, auxiliary decoders: {decoders}"


def _settings_rows(report: DryRunReport, cfg: Config) -> None:
    """The rows of the run's settings: schedule, unlabeled views, precision, trackers."""
    train = cfg.train
    report.add(
        "schedule",
        f"{train.mode}, {train.iterations} iterations, {'ab-CE' if train.supervised_loss == 'abce' else 'CE'}, "
        f"{train.optimizer.name} lr {train.optimizer.lr}",
    )
    if train.unlabeled.cross_view and not cfg.supervised_only:
        unlabeled = train.unlabeled
        main = (
            f"main decoder on the strong view x{unlabeled.main_weight}"
            if unlabeled.main_on_strong
            else "aux only"
        )
        report.add(
            "unlabeled",
            f"weak-strong views: confidence {unlabeled.confidence}, {main}, CutMix p {unlabeled.strong.cutmix.p}",
        )
    from cct_train.engine.hardware import resolve_precision
    from cct_train.engine.trainer import training_device

    choice = resolve_precision(train.mixed_precision, training_device(), warn=False)
    report.add("precision", f"{choice.label} ({choice.reason})")
    from cct_train.engine.trackers import check_trackers

    check_trackers(train.trackers)  # a missing package: the pip line, now rather than at the first log
    images = f"; {train.log_images} validation images per validation" if train.log_images else ""
    report.add("trackers", f"{', '.join(train.trackers) or 'none'} (every {train.log_every} steps{images})")


def _one_step(cfg: Config, model: Any, batches: dict[str, TrainBatch]) -> str:
    """One forward and backward pass of the model on the batches (no optimizer step); what it measured.

    Failures become a ValueError that names the encoder and the crop size and says what to change.
    """
    from cct_train.engine.trainer import training_device
    from cct_train.models.encoders import check_encoder_input

    device = torch.device(training_device())
    model = model.to(device)
    for view_name, view in cfg.domain_views():
        crop = view.data.crop_size
        where = f"domains.{view_name}.data.crop_size" if cfg.multi_domain else "data.crop_size"
        check_encoder_input(model.encoder, crop, where=where)
    # On a GPU the whole batch, so that a step too large for its memory fails here; on a CPU two labeled and
    # two unlabeled images, enough to prove that the model trains, without minutes of arithmetic.
    limit = None if device.type == "cuda" else CPU_STEP_IMAGES
    moved = {name: batch.moved(device, limit) for name, batch in batches.items()}
    images = ", ".join(
        f"{b.images.shape[0]}+{b.unlabeled.shape[0] if b.unlabeled is not None else 0}"
        for b in moved.values()
    )
    generator = torch.Generator(device=device).manual_seed(0)
    model.train()
    start = time.perf_counter()
    try:
        out = model(batches=moved, generator=generator)  # one domain: a multi-domain step of one
        out["loss"].backward()
    except torch.cuda.OutOfMemoryError as error:
        raise RuntimeError(
            f"one training step does not fit in the GPU's memory ({error}); lower data.batch_size, "
            "data.unlabeled_batch_size or data.crop_size, or set train.mixed_precision=bf16"
        ) from None
    except Exception as error:  # any failure here would stop the real run at its first step
        raise _step_error(cfg, error) from None
    seconds = time.perf_counter() - start
    return _step_summary(model, out, device, images, seconds)


def _step_error(cfg: Config, error: Exception) -> ValueError:
    """The dry run's error for a failed training step: what failed, and what to change."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].rstrip(".")
    hint = "Check model.encoder, data.crop_size and the batch sizes"
    if "more than 1 value per channel" in detail:  # BatchNorm on a batch of one pooled image
        hint = "BatchNorm needs at least 2 images per batch: raise data.batch_size (and data.unlabeled_batch_size)"
    return ValueError(
        f"one training step of {cfg.model.encoder} failed: {type(error).__name__}: {detail}. {hint}"
    )


def _step_summary(
    model: Any, out: dict[str, torch.Tensor], device: torch.device, images: str, seconds: float
) -> str:
    """The row of the training step: its losses, whether they are finite, the gradients it left."""
    grads = sum(1 for p in model.parameters() if p.grad is not None)
    loss = float(out["loss"].detach())
    terms = ", ".join(
        f"{key.removeprefix('loss_')} {float(out[key]):.3f}"
        for key in ("loss_sup", "loss_unsup", "loss_weak")
        if key in out and float(out[key]) != 0.0
    )
    finite = (
        ""
        if torch.isfinite(out["loss"]).item()
        else " [NOT FINITE: lower train.optimizer.lr or check the data]"
    )
    return (
        f"forward + backward on {device.type} ({images} images) in {seconds:.1f} s: loss {loss:.3f} ({terms}){finite}, "
        f"gradients in {grads} tensors; no weight updated"
    )


def _data_rows(report: DryRunReport, cfg: Config, prefix: str) -> tuple[int, TrainBatch]:
    """Build one domain's data (one batch of each loader) and add its rows; returns its class count and
    one training step's batch of those loaders."""
    from cct_train.data.build import build_data

    data = cfg.data
    options = f" {data.options}" if data.options else ""
    report.add(f"{prefix}data set", f"{data.dataset} at {data.root}{options}")
    bundle = build_data(cfg)
    report.add(
        f"{prefix}classes",
        f"{bundle.num_classes}: {', '.join(bundle.class_names[:6])}{' ...' if bundle.num_classes > 6 else ''}",
    )
    split = data.split
    how = (
        f"lists {split.labeled_list}" + (f" / {split.unlabeled_list}" if split.unlabeled_list else "")
        if split.labeled_list is not None
        else (f"n_labeled={split.n_labeled} seed {split.seed}" if split.n_labeled else "all labeled")
    )
    report.add(
        f"{prefix}train split '{data.train_split}'",
        f"{bundle.n_labeled} labeled + {bundle.n_unlabeled} unlabeled ({how})",
    )
    batch = _step_batch(report, cfg, bundle, prefix)
    if bundle.val_loader is not None:
        val = _batch(bundle.val_loader)
        n_val = len(cast(Sized, bundle.val_loader.dataset))
        report.add(f"{prefix}val split '{data.val_split}'", f"{n_val} images; batch {_shape(val, 'image')}")
    train = cfg.train
    weak_part = (
        f", weak labels w={train.weak_weight}"
        if data.pseudo_labels is not None and not cfg.supervised_only
        else ""
    )
    report.add(
        f"{prefix}batches",
        f"{data.batch_size}+{data.unlabeled_batch_size or data.batch_size}, crop {data.crop_size[0]}x{data.crop_size[1]} "
        f"scale {data.scale_range[0]}-{data.scale_range[1]}, lambda_u {train.unsupervised_weight.lambda_u}{weak_part}",
    )
    ev = cfg.eval
    window = f", window {ev.window[0]}x{ev.window[1]}" if ev.window else ""
    report.add(f"{prefix}evaluation", f"scales {ev.scales}{', flip' if ev.flip else ''}{window}")
    return bundle.num_classes, batch


def _step_batch(report: DryRunReport, cfg: Config, bundle: TrainingData, prefix: str) -> TrainBatch:
    """One training step's batch of the first labeled and unlabeled batches, augmented, at the full
    weights (every term computed); adds their rows."""
    generator = torch.Generator().manual_seed(0)
    labeled = _batch(bundle.labeled_loader)
    images, masks = bundle.augment.batch(labeled, generator=generator)
    assert masks is not None
    batch = TrainBatch(images, masks)
    if cfg.train.supervised_loss == "abce":
        batch.ce_threshold = 1.0 / bundle.num_classes  # ab-CE's threshold at the first step
    seen = torch.unique(masks)
    report.add(
        f"{prefix}labeled batch",
        f"{_shape(labeled, 'image')} -> augmented {'x'.join(map(str, images.shape))}; mask values {seen.tolist()[:12]}",
    )
    if bundle.unlabeled_loader is None:
        report.add(f"{prefix}unlabeled batch", "none (supervised)")
        return batch
    unlabeled = _batch(bundle.unlabeled_loader)
    batch.unlabeled, weak_targets = bundle.augment.batch(unlabeled, generator=generator)
    batch.consistency_weight = cfg.train.unsupervised_weight.lambda_u  # the full weight: every term computed
    if weak_targets is not None:
        batch.weak_targets, batch.weak_weight = weak_targets, cfg.train.weak_weight
    weak = f" with pseudo-labels {_shape(unlabeled, 'mask')}" if "mask" in unlabeled else ""
    report.add(f"{prefix}unlabeled batch", f"{_shape(unlabeled, 'image')}{weak}")
    return batch
