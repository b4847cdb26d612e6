"""`cct train --dry-run`: build everything a run needs, load one batch of each loader, train nothing.

It catches in seconds what would otherwise fail minutes into a run: a wrong data root or split list, a
label space that does not match ``data.num_classes``, images that cannot be batched, a crop larger than
the images, an unknown encoder. Loading happens in this process (``num_workers`` 0) and nothing is
written.
"""

from __future__ import annotations

import time
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from cct_train.config import Config, config_from_dict


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
    for name, view in cfg.domain_views():
        prefix = f"[{name}] " if cfg.multi_domain else ""
        try:
            num_classes[name] = _data_rows(report, view, prefix)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
            if not cfg.multi_domain:
                raise
            raise type(error)(f"domain {name!r}: {error}") from error
    classes: int | dict[str, int] = num_classes if cfg.multi_domain else next(iter(num_classes.values()))
    if cfg.model.weights is None and not cfg.model.pretrained:
        # Nothing to load: shapes only (no allocation, no initialisation), a fraction of a second.
        with torch.device("meta"):
            model = build_model(cfg, classes)
    else:
        model = build_model(cfg, classes)  # loads the weights file / downloads the weights
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
    report.add(
        "model",
        f"{cfg.model.encoder} OS{cfg.model.output_stride}, {shared}{params / 1e6:.1f} M parameters, "
        f"auxiliary decoders: {decoders}",
    )
    train = cfg.train
    report.add(
        "schedule",
        f"{train.mode}, {train.iterations} iterations, {'ab-CE' if train.supervised_loss == 'abce' else 'CE'}, "
        f"{train.optimizer.name} lr {train.optimizer.lr}",
    )
    from cct_train.engine.machine import resolve_precision
    from cct_train.engine.trainer import training_device

    choice = resolve_precision(train.mixed_precision, training_device(), warn=False)
    report.add("precision", f"{choice.label} ({choice.reason})")
    report.seconds = time.perf_counter() - start
    return report


def _data_rows(report: DryRunReport, cfg: Config, prefix: str) -> int:
    """Build one domain's data (one batch of each loader) and add its rows; returns its class count."""
    from cct_train.data.setup import build_data

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
    seen = torch.unique(masks)
    report.add(
        f"{prefix}labeled batch",
        f"{_shape(labeled, 'image')} -> augmented {'x'.join(map(str, images.shape))}; mask values {seen.tolist()[:12]}",
    )
    if bundle.unlabeled_loader is not None:
        unlabeled = _batch(bundle.unlabeled_loader)
        weak = "mask" in unlabeled
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
        f"scale {data.scale_range[0]}-{data.scale_range[1]}, lambda_u {train.consistency.weight}{weak_part}",
    )
    ev = cfg.eval
    window = f", window {ev.window[0]}x{ev.window[1]}" if ev.window else ""
    report.add(f"{prefix}evaluation", f"scales {ev.scales}{', flip' if ev.flip else ''}{window}")
    return bundle.num_classes
