"""Weak labels to pseudo-labels (paper 3.3) over cct-train's encoders and data sets.

1. :func:`train_cam_classifier`: an encoder from :func:`cct_train.encoders.build_encoder` plus
   :class:`cct_weak.CAMClassifier` (global average pooling + linear), trained with multi-label BCE on
   image-level labels (from a CSV / text file, see :func:`read_image_labels`, or derived from the masks).
   Saved with :func:`cct_train.checkpoint.save_checkpoint`; :func:`load_cam_classifier` reads it back.
2. :func:`generate_pseudo_labels`: batched multi-scale CAMs on the device, thresholded into pseudo-labels,
   refined by a dense CRF in worker processes (:func:`cct_weak.refine_many`), written as index PNGs
   ``<name>.png`` (255 = ignored) with a ``report.json``.
3. Training with ``data.pseudo_labels`` pointing at that folder adds ``w_w * Lw`` on the auxiliary decoders.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress

from cct_train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cct_train.data import IGNORE_INDEX, Normalize, SegmentationAugment, build_loader, cycle, default_palette
from cct_train.data.pseudo import pseudo_label_path
from cct_train.encoders import IMAGENET_MEAN, IMAGENET_STD, build_encoder, input_normalization
from cct_train.metrics import confusion_matrix, scores_from_confusion
from cct_train.progress import _columns, console, training_progress
from cct_weak import (
    CRF_INSTALL_HINT,
    CAMClassifier,
    cams_to_pseudo_labels,
    compute_cams,
    image_labels_from_masks,
    is_crf_available,
    multilabel_loss,
    refine_many,
)

__all__ = [
    "CAM_CHECKPOINT_KIND",
    "CAMCheckpoint",
    "CAMTrainResult",
    "ImageLabels",
    "generate_pseudo_labels",
    "labels_tensor",
    "load_cam_classifier",
    "parse_background_index",
    "read_image_labels",
    "require_crf",
    "train_cam_classifier",
]

#: ``kind`` of the checkpoints written by :func:`train_cam_classifier`.
CAM_CHECKPOINT_KIND = "cam-classifier"

#: Image-level labels: sample name -> class ids present in the image.
ImageLabels = dict[str, list[int]]

_SEPARATORS = re.compile(r"[\s;,|]+")
_HEADER = ({"name", "image", "id"}, {"labels", "label", "classes"})


# --------------------------------------------------------------------------------------------- labels


def _parse_classes(tokens: Sequence[str], class_names: Sequence[str], where: str) -> list[int]:
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    found: list[int] = []
    for token in tokens:
        if re.fullmatch(r"[+-]?\d+", token):
            index = int(token)
            if not 0 <= index < len(class_names):
                raise ValueError(f"{where}: class index {index} is outside 0..{len(class_names) - 1}")
        elif token.lower() in by_name:
            index = by_name[token.lower()]
        else:
            raise ValueError(f"{where}: unknown class {token!r} (known: {', '.join(class_names)})")
        if index not in found:
            found.append(index)
    return sorted(found)


def read_image_labels(path: str | Path, class_names: Sequence[str]) -> ImageLabels:
    """Read image-level labels from a CSV or a text file.

    - ``.csv``: rows ``name,labels`` (an optional header ``name,labels``), where ``labels`` holds class
      names or indices separated by spaces or semicolons (``horse;person`` or ``"12 15"``); an empty
      ``labels`` field is an image with none of the classes.
    - any other extension: one image per line, ``name label label ...`` (whitespace, ``,`` or ``;``).

    Blank lines and lines starting with ``#`` are skipped. Class names match case-insensitively.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown class name, an index out of range, a duplicated image or an empty file,
            naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image-level labels not found: {path}")
    labels: ImageLabels = {}
    lines = path.read_text().splitlines()
    is_csv = path.suffix.lower() == ".csv"
    rows = csv.reader(lines) if is_csv else ([line] for line in lines)
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        if is_csv:
            name, rest = row[0].strip(), " ".join(row[1:])
            if not labels and name.lower() in _HEADER[0] and rest.strip().lower() in _HEADER[1]:
                continue  # a header row
            tokens = [t for t in _SEPARATORS.split(rest) if t]
        else:
            parts = [t for t in _SEPARATORS.split(row[0]) if t]
            name, tokens = parts[0], parts[1:]
        if not name:
            raise ValueError(f"{where}: empty image name")
        if name in labels:
            raise ValueError(f"{where}: image {name!r} is listed twice")
        labels[name] = _parse_classes(tokens, class_names, where)
    if not labels:
        raise ValueError(f"{path}: no image-level labels found")
    return labels


def labels_tensor(
    names: Sequence[str], labels: Mapping[str, Sequence[int]], num_classes: int
) -> torch.Tensor:
    """Multi-hot rows ``(len(names), C)`` float for ``names``; a name without labels raises KeyError."""
    table = torch.zeros(len(names), num_classes)
    for row, name in enumerate(names):
        if name not in labels:
            raise KeyError(f"no image-level labels for {name!r}")
        table[row, list(labels[name])] = 1.0
    return table


def parse_background_index(value: str | int | None, num_classes: int) -> int | None:
    """``"none"`` / ``None`` -> ``None`` (no background class), else an index in ``[0, C)``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return None
    try:
        index = int(value)
    except ValueError:
        raise ValueError(f"background index must be an integer or 'none', got {value!r}") from None
    if not 0 <= index < num_classes:
        raise ValueError(f"background index {index} is outside 0..{num_classes - 1} (or use 'none')")
    return index


def require_crf() -> None:
    """Raise ImportError with the install hint (and the ``--no-crf`` way out) when pydensecrf is missing."""
    if not is_crf_available():
        raise ImportError(f"{CRF_INSTALL_HINT} Or skip the CRF refinement with --no-crf (crf=False).")


class _LabelLookup:
    """Image-level labels of a batch from its names: one row gather, no per-pixel work."""

    def __init__(self, names: Sequence[str], labels: Mapping[str, Sequence[int]], num_classes: int) -> None:
        self.row = {name: i for i, name in enumerate(names)}
        self.table = labels_tensor(names, labels, num_classes)

    def __call__(self, names: Sequence[str], device: torch.device) -> torch.Tensor:
        index = torch.tensor([self.row[n] for n in names], dtype=torch.long)
        return self.table[index].to(device, non_blocking=True)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------- classifier


@dataclass
class CAMTrainResult:
    path: Path
    iterations: int
    loss: float
    seconds: float
    num_images: int


@dataclass
class CAMCheckpoint:
    """A loaded classifier and what it was trained for."""

    model: CAMClassifier
    num_classes: int
    class_names: list[str]
    encoder: str
    output_stride: int
    info: dict[str, Any] = field(default_factory=dict)
    #: ``(mean, std)`` of the input normalisation it was trained with (ImageNet's for older checkpoints).
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD)


def _build_classifier(
    encoder: str,
    num_classes: int,
    output_stride: int,
    pretrained: bool = False,
    weights: str | Path | None = None,
    in_features: int | None = None,
) -> CAMClassifier:
    backbone = build_encoder(encoder, output_stride=output_stride, pretrained=pretrained, weights=weights)
    return CAMClassifier(backbone, num_classes, in_features=in_features or backbone.out_channels)


def train_cam_classifier(
    dataset: Any,
    output: str | Path,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    labels: Mapping[str, Sequence[int]] | None = None,
    encoder: str = "timm:resnet50",
    output_stride: Literal[8, 16, 32] = 16,
    pretrained: bool = False,
    weights: str | Path | None = None,
    iterations: int = 1000,
    batch_size: int = 8,
    optimizer: Literal["sgd", "adamw"] = "sgd",
    lr: float = 0.01,
    classifier_lr_factor: float = 10.0,
    weight_decay: float = 1e-4,
    crop_size: tuple[int, int] = (320, 320),
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    log_every: int = 20,
    quiet: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> CAMTrainResult:
    """Train the classification branch (encoder + GAP + linear) with multi-label BCE (paper 3.3).

    Args:
        dataset: an :class:`~cct_train.data.ImageDataset` whose images stack into batches (all one size,
            e.g. via ``resize``). Without ``labels`` it must have masks: the labels are derived from the
            (augmented) masks with :func:`cct_weak.image_labels_from_masks`.
        output: the checkpoint file to write (``.pt``), atomically.
        num_classes: ``C``.
        class_names: stored in the checkpoint (default ``class_0..``).
        labels: image-level labels by sample name (:func:`read_image_labels`); the dataset is restricted
            to the listed names.
        encoder, output_stride, pretrained, weights: passed to :func:`~cct_train.encoders.build_encoder`.
        iterations, batch_size: training length and batch size.
        optimizer, lr, classifier_lr_factor, weight_decay: SGD (momentum 0.9) or AdamW, poly schedule
            (power 0.9); the linear layer learns ``classifier_lr_factor`` times faster than the encoder.
        crop_size, scale_range, hflip: batched on-device augmentation (:class:`SegmentationAugment`).
        num_workers: data-loading processes.
        device: default CUDA when available.
        seed: seeds the loader order, the augmentation and the initial weights.
        log_every: host syncs for the loss every this many steps.
        quiet: no progress bar.
        callback: ``callback(step, loss)`` at each logged step.
    """
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"need iterations >= 1 and batch_size >= 1, got {iterations} and {batch_size}")
    names_all = list(dataset.names)
    lookup: _LabelLookup | None = None
    if labels is not None:
        known = set(names_all)
        listed = [n for n in labels if n in known]
        unknown = [n for n in labels if n not in known]
        if unknown:
            raise ValueError(
                f"{len(unknown)} image(s) of the labels are not in the data set, e.g. {unknown[:5]} "
                f"(the data set has {len(names_all)} images, e.g. {names_all[:3]})"
            )
        dataset = dataset.subset(listed)
        if hasattr(dataset, "without_masks"):
            dataset = dataset.without_masks()
        lookup = _LabelLookup(list(dataset.names), labels, num_classes)
    elif not getattr(dataset, "has_masks", False):
        raise ValueError("no image-level labels given and the data set has no masks to derive them from")

    dev = _device(device)
    torch.manual_seed(seed)
    model = _build_classifier(encoder, num_classes, output_stride, pretrained, weights).to(dev)
    groups = [
        {"params": list(model.encoder.parameters()), "lr": lr},
        {"params": list(model.classifier.parameters()), "lr": lr * classifier_lr_factor},
    ]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: max(0.0, 1.0 - it / iterations) ** 0.9)
    augment = SegmentationAugment(crop_size, scale_range=scale_range, hflip=hflip).to(dev)
    mean, std = input_normalization(encoder)  # what the (pretrained) encoder expects; stored below
    normalize = Normalize(mean, std).to(dev)
    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    loader = build_loader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=True,
        num_workers=num_workers,
        seed=seed,
        drop_last=True,
    )
    stream = cycle(loader)
    start = time.perf_counter()
    last_loss = math.nan
    model.train()
    with training_progress(iterations, disable=quiet) as progress:
        for step in range(1, iterations + 1):
            batch = next(stream)
            images = batch["image"].to(dev, non_blocking=True)
            masks = batch["mask"].to(dev, non_blocking=True) if lookup is None else None
            floats, masks = augment(images, masks, generator=generator)
            if lookup is not None:
                targets = lookup(batch["name"], dev)
            else:
                assert masks is not None
                targets = image_labels_from_masks(masks, num_classes)
            loss = multilabel_loss(model(normalize(floats)), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
            if step % log_every == 0 or step == iterations:
                last_loss = float(loss.detach())  # one host sync per log interval
                progress.update(step, loss=last_loss)
                if callback is not None:
                    callback(step, last_loss)
            else:
                progress.update(step)
    seconds = time.perf_counter() - start
    path = Path(output)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    save_checkpoint(
        path,
        {
            "kind": CAM_CHECKPOINT_KIND,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "encoder": encoder,
            "mean": list(mean),
            "std": list(std),
            "output_stride": int(output_stride),
            "in_features": int(model.in_features),
            "num_classes": int(num_classes),
            "class_names": names,
            "iterations": int(iterations),
            "loss": float(last_loss),
            "labels": "file" if labels is not None else "masks",
            "num_images": len(dataset),
        },
    )
    return CAMTrainResult(path, iterations, float(last_loss), seconds, len(dataset))


def load_cam_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> CAMCheckpoint:
    """Rebuild the classifier saved by :func:`train_cam_classifier` (loaded with ``weights_only=True``)."""
    state = load_checkpoint(path, map_location=map_location)
    if state.get("kind") != CAM_CHECKPOINT_KIND:
        raise CheckpointError(
            f"{path} is not a CAM classifier checkpoint (kind {state.get('kind')!r}); "
            "train one with `cct cam train`"
        )
    model = _build_classifier(
        str(state["encoder"]),
        int(state["num_classes"]),
        int(state["output_stride"]),
        in_features=int(state["in_features"]),
    )
    model.load_state_dict(state["model"])
    model.eval()
    info = {k: v for k, v in state.items() if k != "model"}
    return CAMCheckpoint(
        model=model,
        num_classes=int(state["num_classes"]),
        class_names=[str(n) for n in state["class_names"]],
        encoder=str(state["encoder"]),
        output_stride=int(state["output_stride"]),
        info=info,
        normalization=(
            tuple(float(v) for v in state.get("mean", IMAGENET_MEAN)),
            tuple(float(v) for v in state.get("std", IMAGENET_STD)),
        ),
    )


# --------------------------------------------------------------------------------------------- pseudo-labels


class _Stats:
    """Pixel counts and a confusion matrix (pseudo-labels vs ground truth on the non-ignored pixels)."""

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros(256, dtype=np.int64)
        self.images_per_class = np.zeros(num_classes, dtype=np.int64)
        self.confusion: torch.Tensor | None = None

    def add(self, pseudo: np.ndarray, gt: np.ndarray | None) -> None:
        counts = np.bincount(pseudo.ravel().astype(np.int64), minlength=256)[:256]
        self.counts += counts
        self.images_per_class += counts[: self.num_classes] > 0
        if gt is not None:
            pred = torch.from_numpy(pseudo.astype(np.int64))
            target = torch.from_numpy(gt.astype(np.int64))
            target = torch.where(
                pred == self.ignore_index, torch.full_like(target, self.ignore_index), target
            )
            cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
            self.confusion = cm if self.confusion is None else self.confusion + cm

    def report(self, class_names: Sequence[str]) -> dict[str, Any]:
        total = int(self.counts.sum())
        ignored = int(self.counts[self.ignore_index])
        per_class = {name: int(self.counts[i]) for i, name in enumerate(class_names)}
        out: dict[str, Any] = {
            "pixels": total,
            "class_pixels": per_class,
            "class_fraction": {name: (v / total if total else 0.0) for name, v in per_class.items()},
            "images_per_class": {name: int(self.images_per_class[i]) for i, name in enumerate(class_names)},
            "ignore_pixels": ignored,
            "ignore_fraction": ignored / total if total else 0.0,
            "miou": None,
        }
        if self.confusion is not None:
            scores = scores_from_confusion(self.confusion)
            out.update(scores.as_dict(list(class_names)))
            out["evaluated_on"] = "non-ignored pseudo-label pixels with a ground-truth label"
        return out


def _write_png(path: Path, labels: np.ndarray, palette: Sequence[Sequence[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [0] * (256 * 3)
    for i, colour in enumerate(palette[:255]):
        flat[3 * i : 3 * i + 3] = [int(c) for c in colour]
    flat[3 * 255 : 3 * 256] = [255, 255, 255]  # ignored pixels: white
    image.putpalette(flat)
    image.save(path)


def generate_pseudo_labels(
    classifier: CAMClassifier,
    dataset: Any,
    output: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    labels: Mapping[str, Sequence[int]] | None = None,
    from_masks: bool = False,
    label_threshold: float = 0.5,
    theta_bg: float = 0.05,
    theta_fg: float = 0.30,
    background_index: int | None = 0,
    scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
    flip: bool = True,
    crf: bool = True,
    workers: int = 2,
    batch_size: int = 8,
    block_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    ignore_index: int = IGNORE_INDEX,
    quiet: bool = False,
    extra_report: Mapping[str, Any] | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
) -> dict[str, Any]:
    """Pseudo-labels for every image of ``dataset``: ``<output>/<name>.png`` and ``<output>/report.json``.

    Per batch, on the device: multi-scale CAMs (:func:`cct_weak.compute_cams`), then
    :func:`cct_weak.cams_to_pseudo_labels` (``theta_bg`` / ``theta_fg``, ``background_index``; only the
    classes of each image's image-level label can appear). With ``crf`` the maps are refined by a dense
    CRF in ``workers`` processes (:func:`cct_weak.refine_many`) a block of ``block_size`` images at a time,
    while the next block's CAMs are computed; the CRF acts as a filter (disagreement -> ignored).

    Image-level labels: ``labels`` by name (e.g. :func:`read_image_labels`), else with ``from_masks`` the
    ground-truth masks (for testing), else the classifier's own predictions (sigmoid > ``label_threshold``).

    ``report.json``: settings, per-class pixel counts and fractions, images per class, the ignore fraction
    and, when the data set has masks, the pseudo-labels' mIoU / per-class IoU / pixel accuracy against them
    on the non-ignored pixels (with ``crf``, the same figures before the CRF under ``"thresholded"``).

    Raises:
        ImportError: ``crf`` without pydensecrf installed (before any work), with the install hint.
        ValueError: ``from_masks`` on a data set without masks, or names without labels.
    """
    started = time.perf_counter()
    if crf:
        require_crf()
    num_classes = int(classifier.num_classes)
    names_ = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    colours = list(palette) if palette is not None else default_palette(num_classes)
    has_masks = bool(getattr(dataset, "has_masks", False))
    if from_masks and not has_masks:
        raise ValueError("from_masks: the data set has no masks to derive the image-level labels from")
    lookup: _LabelLookup | None = None
    if labels is not None:
        missing = [n for n in dataset.names if n not in labels]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) have no image-level labels, e.g. {missing[:5]} "
                "(restrict the images with --names, or add them to the labels file)"
            )
        lookup = _LabelLookup(list(dataset.names), labels, num_classes)
    label_source = "file" if lookup is not None else "masks" if from_masks else "predicted"

    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = _device(device)
    model = classifier.to(dev).eval()
    normalize = Normalize(*normalization).to(dev)
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    mp_context = multiprocessing.get_context("spawn") if torch.cuda.is_initialized() else None

    final = _Stats(num_classes, ignore_index)
    before = _Stats(num_classes, ignore_index)
    block: dict[str, list[Any]] = {"name": [], "image": [], "pseudo": [], "gt": []}
    pending: tuple[Future[list[np.ndarray]], dict[str, list[Any]]] | None = None
    n = len(dataset)

    with (
        Progress(*_columns(), console=console, transient=quiet, disable=quiet) as bars,  # type: ignore[arg-type]
        ThreadPoolExecutor(max_workers=1) as background,
    ):
        cam_task = bars.add_task("CAMs", total=n, rate="", info="")
        crf_task = bars.add_task("CRF", total=n, rate="", info="", visible=crf)

        def finish(job: Future[list[np.ndarray]], done: dict[str, list[Any]]) -> None:
            for name, refined, gt in zip(done["name"], job.result(), done["gt"], strict=True):
                refined = refined.astype(np.uint8)
                final.add(refined, gt)
                _write_png(pseudo_label_path(out_dir, name), refined, colours)

        def refine(done: dict[str, list[Any]]) -> list[np.ndarray]:
            if not crf:
                return list(done["pseudo"])
            return refine_many(
                done["image"],
                done["pseudo"],
                num_classes,
                workers=workers,
                progress=lambda k: bars.advance(crf_task, k),
                mp_context=mp_context,
                ignore_index=ignore_index,
            )

        def flush() -> None:
            nonlocal pending, block
            if pending is not None:  # at most one block in the CRF while the next one's CAMs run
                finish(*pending)
                pending = None
            if block["name"]:
                pending = (background.submit(refine, block), block)
                block = {"name": [], "image": [], "pseudo": [], "gt": []}

        for batch in loader:
            images = batch["image"].to(dev, non_blocking=True)
            x = normalize(images)
            if lookup is not None:
                image_labels = lookup(batch["name"], dev)
            elif from_masks:
                image_labels = image_labels_from_masks(batch["mask"].to(dev), num_classes, ignore_index)
            else:
                with torch.no_grad():
                    image_labels = (torch.sigmoid(model(x)) > label_threshold).float()
            cams = compute_cams(model, x, image_labels, scales=scales, flip=flip)
            pseudo = cams_to_pseudo_labels(
                cams,
                image_labels,
                theta_bg,
                theta_fg,
                background_index=background_index,
                ignore_index=ignore_index,
            )
            pseudo_np = pseudo.to(torch.uint8).cpu().numpy()
            images_np = batch["image"].permute(0, 2, 3, 1).numpy()  # the un-normalised RGB, for the CRF
            gts = list(batch["mask"].numpy()) if "mask" in batch and has_masks else [None] * len(pseudo_np)
            for name, image, lab, gt in zip(batch["name"], images_np, pseudo_np, gts, strict=True):
                block["name"].append(name)
                block["image"].append(np.ascontiguousarray(image))
                block["pseudo"].append(lab)
                block["gt"].append(gt)
                before.add(lab, gt)
            bars.advance(cam_task, len(pseudo_np))
            if len(block["name"]) >= block_size:
                flush()
        flush()
        flush()

    report: dict[str, Any] = {
        "num_images": n,
        "num_classes": num_classes,
        "class_names": names_,
        "ignore_index": ignore_index,
        "settings": {
            "theta_bg": theta_bg,
            "theta_fg": theta_fg,
            "background_index": background_index,
            "scales": [float(s) for s in scales],
            "flip": flip,
            "crf": crf,
            "image_labels": label_source,
            **({"label_threshold": label_threshold} if label_source == "predicted" else {}),
        },
        **(dict(extra_report) if extra_report else {}),
        **final.report(names_),
    }
    if crf:
        report["thresholded"] = before.report(names_)
    report["seconds"] = time.perf_counter() - started
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
