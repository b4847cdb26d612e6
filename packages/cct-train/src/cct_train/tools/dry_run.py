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
from typing import Any, cast

import torch

from cct_train.config import Config, config_from_dict

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
    inputs: dict[str, dict[str, Any]] = {}
    for name, view in cfg.domain_views():
        prefix = f"[{name}] " if cfg.multi_domain else ""
        try:
            num_classes[name], inputs[name] = _data_rows(report, view, prefix)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
            if not cfg.multi_domain:
                raise
            raise type(error)(f"domain {name!r}: {error}") from error
    classes: int | dict[str, int] = num_classes if cfg.multi_domain else next(iter(num_classes.values()))
    model = build_model(cfg, classes)  # loads the weights file / downloads the weights when asked
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
    report.add(
        "model",
        f"{cfg.model.encoder} {stride}, {shared}{params / 1e6:.1f} M parameters, auxiliary decoders: {decoders}",
    )
    report.add("one training step", _one_step(cfg, model, inputs))
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
    report.seconds = time.perf_counter() - start
    return report


def _one_step(cfg: Config, model: Any, inputs: dict[str, dict[str, Any]]) -> str:
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
    moved = {
        name: {k: v[:limit].to(device) if isinstance(v, torch.Tensor) else v for k, v in part.items()}
        for name, part in inputs.items()
    }
    images = ", ".join(
        f"{part['images'].shape[0]}+{part['unlabeled'].shape[0] if 'unlabeled' in part else 0}"
        for part in moved.values()
    )
    generator = torch.Generator(device=device).manual_seed(0)
    model.train()
    start = time.perf_counter()
    try:
        if cfg.multi_domain:
            out = model(batches=moved, generator=generator)
        else:
            (single,) = moved.values()
            out = model(single.pop("images"), single.pop("targets"), generator=generator, **single)
        out["loss"].backward()
    except torch.cuda.OutOfMemoryError as error:
        raise RuntimeError(
            f"one training step does not fit in the GPU's memory ({error}); lower data.batch_size, "
            "data.unlabeled_batch_size or data.crop_size, or set train.mixed_precision=bf16"
        ) from None
    except Exception as error:  # any failure here would stop the real run at its first step
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].rstrip(".")
        hint = "Check model.encoder, data.crop_size and the batch sizes"
        if "more than 1 value per channel" in detail:  # BatchNorm on a batch of one pooled image
            hint = "BatchNorm needs at least 2 images per batch: raise data.batch_size (and data.unlabeled_batch_size)"
        raise ValueError(
            f"one training step of {cfg.model.encoder} failed: {type(error).__name__}: {detail}. {hint}"
        ) from None
    seconds = time.perf_counter() - start
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


def _data_rows(report: DryRunReport, cfg: Config, prefix: str) -> tuple[int, dict[str, Any]]:
    """Build one domain's data (one batch of each loader) and add its rows; returns its class count and
    the keyword inputs of one training step on those batches."""
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
    generator = torch.Generator().manual_seed(0)
    labeled = _batch(bundle.labeled_loader)
    images, masks = bundle.augment.batch(labeled, generator=generator)
    assert masks is not None
    # The first step: the model's supervised loss reads its threshold of it (ab-CE: 1/C).
    step: dict[str, Any] = {"images": images, "targets": masks, "step": 0}
    seen = torch.unique(masks)
    report.add(
        f"{prefix}labeled batch",
        f"{_shape(labeled, 'image')} -> augmented {'x'.join(map(str, images.shape))}; mask values {seen.tolist()[:12]}",
    )
    if bundle.unlabeled_loader is not None:
        unlabeled = _batch(bundle.unlabeled_loader)
        weak = "mask" in unlabeled
        step["unlabeled"], weak_targets = bundle.augment.batch(unlabeled, generator=generator)
        # w_u at its full weight, lambda_u: every term computed.
        step["consistency_weight"] = cfg.train.unsupervised_weight.lambda_u
        if weak_targets is not None:
            step["weak_targets"], step["weak_weight"] = weak_targets, cfg.train.weak_weight
        report.add(
            f"{prefix}unlabeled batch",
            f"{_shape(unlabeled, 'image')}"
            + (f" with pseudo-labels {_shape(unlabeled, 'mask')}" if weak else ""),
        )
    else:
        report.add(f"{prefix}unlabeled batch", "none (supervised)")
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
    return bundle.num_classes, step
