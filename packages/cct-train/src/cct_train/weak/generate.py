"""CAMs to pseudo-labels (paper 3.3): batched multi-scale CAMs on the device, thresholds, a dense CRF in
worker processes, index PNGs and a report.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch.utils.data import DataLoader

from cct_train.common.atomic import atomic_write_text
from cct_train.common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cct_train.common.progress import console, progress_columns
from cct_train.data import IGNORE_INDEX, Normalize, build_loader, default_palette
from cct_train.data.pseudo_label_files import pseudo_label_path
from cct_train.eval.metrics import confusion_matrix, scores_from_confusion
from cct_train.weak.labels import LabelLookup, require_crf, resolve_device
from cct_weak import (
    CAMClassifier,
    cams_to_pseudo_labels,
    compute_cams,
    image_labels_from_masks,
    refine_many,
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


@dataclass(frozen=True)
class _MapSettings:
    """How CAMs become label maps (CAM scales and flip, thresholds, CRF): one object so that the batch loop,
    the CRF stage and the report read the very same values."""

    theta_bg: float
    theta_fg: float
    background_index: int | None
    scales: Sequence[float]
    flip: bool
    crf: bool
    workers: int
    block_size: int
    ignore_index: int
    #: The encoder's output stride: CAMs are cropped onto the image, not squeezed (issue #39, item 4).
    stride: int | None = None


class _LabelSource:
    """Where each batch's image-level labels come from: a labels file, the ground-truth masks, or the
    classifier's own predictions; checked against the data set once, before any device work."""

    def __init__(
        self,
        lookup: LabelLookup | None,
        *,
        from_masks: bool,
        num_classes: int,
        ignore_index: int,
        threshold: float,
    ) -> None:
        self.lookup = lookup
        self.from_masks = from_masks
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = threshold

    @classmethod
    def for_dataset(
        cls,
        dataset: Any,
        labels: Mapping[str, Sequence[int]] | None,
        from_masks: bool,
        num_classes: int,
        ignore_index: int,
        threshold: float,
    ) -> _LabelSource:
        """Refuses masks the data set lacks and names without labels, so a run cannot fail half-way."""
        if from_masks and not bool(getattr(dataset, "has_masks", False)):
            raise ValueError("from_masks: the data set has no masks to derive the image-level labels from")
        lookup: LabelLookup | None = None
        if labels is not None:
            missing = [n for n in dataset.names if n not in labels]
            if missing:
                raise ValueError(
                    f"{len(missing)} image(s) have no image-level labels, e.g. {missing[:5]} "
                    "(restrict the images with --names, or add them to the labels file)"
                )
            lookup = LabelLookup(list(dataset.names), labels, num_classes)
        return cls(
            lookup,
            from_masks=from_masks,
            num_classes=num_classes,
            ignore_index=ignore_index,
            threshold=threshold,
        )

    @property
    def name(self) -> str:
        """The report's ``settings.image_labels``."""
        return "file" if self.lookup is not None else "masks" if self.from_masks else "predicted"

    def __call__(
        self, model: CAMClassifier, x: torch.Tensor, batch: Mapping[str, Any], dev: torch.device
    ) -> torch.Tensor:
        if self.lookup is not None:
            return self.lookup(batch["name"], dev)
        if self.from_masks:
            return image_labels_from_masks(batch["mask"].to(dev), self.num_classes, self.ignore_index)
        with torch.no_grad():
            return (torch.sigmoid(model(x)) > self.threshold).float()


@dataclass
class _Block:
    """A block of images on its way through the CRF: the un-normalised RGB images the CRF needs, the
    thresholded maps, and the masks (``None`` without) to score the refined maps against."""

    name: list[str] = field(default_factory=list)
    image: list[np.ndarray] = field(default_factory=list)
    pseudo: list[np.ndarray] = field(default_factory=list)
    gt: list[np.ndarray | None] = field(default_factory=list)


class _CRFStage:
    """Refines one block in a background thread (the CRF's worker processes do the work) while the device
    computes the next block's CAMs; at most one block waits, so at most two blocks are held in memory."""

    def __init__(
        self,
        background: ThreadPoolExecutor,
        refine: Callable[[_Block], list[np.ndarray]],
        finish: Callable[[_Block, list[np.ndarray]], None],
        block_size: int,
    ) -> None:
        self.block = _Block()
        self._background = background
        self._refine = refine
        self._finish = finish
        self._block_size = block_size
        self._pending: tuple[Future[list[np.ndarray]], _Block] | None = None

    def flush(self) -> None:
        """Finishes the waiting block, then hands the current one to the background thread."""
        if self._pending is not None:
            job, done = self._pending
            self._finish(done, job.result())
            self._pending = None
        if self.block.name:
            self._pending = (self._background.submit(self._refine, self.block), self.block)
            self.block = _Block()

    def flush_if_full(self) -> None:
        if len(self.block.name) >= self._block_size:
            self.flush()

    def close(self) -> None:
        """Two flushes: the first hands over the last, partial block, the second waits for it."""
        self.flush()
        self.flush()


def _refine_block(
    block: _Block,
    settings: _MapSettings,
    num_classes: int,
    progress: Callable[[int], None],
    mp_context: Any,
) -> list[np.ndarray]:
    """The block's maps through the dense CRF, or as they are without ``crf`` (the same path either way, so
    the writing and the scoring do not depend on it)."""
    if not settings.crf:
        return list(block.pseudo)
    return refine_many(
        block.image,
        block.pseudo,
        num_classes,
        workers=settings.workers,
        progress=progress,
        mp_context=mp_context,
        ignore_index=settings.ignore_index,
    )


def _write_block(
    block: _Block, refined: list[np.ndarray], stats: _Stats, out_dir: Path, colours: Sequence[Sequence[int]]
) -> None:
    """Scores and writes a refined block, in the main thread (the statistics are not shared)."""
    for name, labels, gt in zip(block.name, refined, block.gt, strict=True):
        labels = labels.astype(np.uint8)
        stats.add(labels, gt)
        _write_png(pseudo_label_path(out_dir, name), labels, colours)


def _threshold_batch(
    model: CAMClassifier,
    batch: Mapping[str, Any],
    normalize: Normalize,
    dev: torch.device,
    source: _LabelSource,
    settings: _MapSettings,
) -> torch.Tensor:
    """One batch's thresholded maps, all on the device: image-level labels, multi-scale CAMs, thresholds."""
    x = normalize(batch["image"].to(dev, non_blocking=True))
    image_labels = source(model, x, batch, dev)
    cams = compute_cams(
        model, x, image_labels, scales=settings.scales, flip=settings.flip, stride=settings.stride
    )
    return cams_to_pseudo_labels(
        cams,
        image_labels,
        settings.theta_bg,
        settings.theta_fg,
        background_index=settings.background_index,
        ignore_index=settings.ignore_index,
    )


def _collect_batch(
    block: _Block, before: _Stats, batch: Mapping[str, Any], pseudo_np: np.ndarray, has_masks: bool
) -> None:
    """Adds a batch's maps to the block (the CRF works per image, on host memory) and scores them as
    thresholded, before the CRF."""
    images_np = batch["image"].permute(0, 2, 3, 1).numpy()  # the un-normalised RGB, for the CRF
    gts = list(batch["mask"].numpy()) if "mask" in batch and has_masks else [None] * len(pseudo_np)
    for name, image, lab, gt in zip(batch["name"], images_np, pseudo_np, gts, strict=True):
        block.name.append(name)
        block.image.append(np.ascontiguousarray(image))
        block.pseudo.append(lab)
        block.gt.append(gt)
        before.add(lab, gt)


def _label_batches(
    model: CAMClassifier,
    loader: DataLoader[Any],
    normalize: Normalize,
    dev: torch.device,
    source: _LabelSource,
    settings: _MapSettings,
    out_dir: Path,
    colours: Sequence[Sequence[int]],
    quiet: bool,
) -> tuple[_Stats, _Stats]:
    """Writes every image's pseudo-label; returns the statistics after and before the CRF."""
    num_classes = source.num_classes
    # CUDA does not survive a fork: the CRF's workers are spawned once the model is on the GPU
    mp_context = multiprocessing.get_context("spawn") if torch.cuda.is_initialized() else None
    has_masks = bool(getattr(loader.dataset, "has_masks", False))
    final = _Stats(num_classes, settings.ignore_index)
    before = _Stats(num_classes, settings.ignore_index)
    n = len(loader.dataset)  # type: ignore[arg-type]
    with (
        Progress(*progress_columns(), console=console, transient=quiet, disable=quiet) as bars,  # type: ignore[arg-type]
        ThreadPoolExecutor(max_workers=1) as background,
    ):
        cam_task = bars.add_task("CAMs", total=n, rate="", info="")
        crf_task = bars.add_task("CRF", total=n, rate="", info="", visible=settings.crf)
        stage = _CRFStage(
            background,
            lambda block: _refine_block(
                block, settings, num_classes, lambda k: bars.advance(crf_task, k), mp_context
            ),
            lambda block, refined: _write_block(block, refined, final, out_dir, colours),
            settings.block_size,
        )
        for batch in loader:
            pseudo_np = (
                _threshold_batch(model, batch, normalize, dev, source, settings).to(torch.uint8).cpu().numpy()
            )
            _collect_batch(stage.block, before, batch, pseudo_np, has_masks)
            bars.advance(cam_task, len(pseudo_np))
            stage.flush_if_full()
        stage.close()
    return final, before


def _report(
    n: int,
    class_names: list[str],
    settings: _MapSettings,
    source: _LabelSource,
    extra_report: Mapping[str, Any] | None,
    final: _Stats,
    before: _Stats,
) -> dict[str, Any]:
    """``report.json`` without its ``seconds``: the settings first, so a report says how it was made."""
    report: dict[str, Any] = {
        "num_images": n,
        "num_classes": source.num_classes,
        "class_names": class_names,
        "ignore_index": settings.ignore_index,
        "settings": {
            "theta_bg": settings.theta_bg,
            "theta_fg": settings.theta_fg,
            "background_index": settings.background_index,
            "scales": [float(s) for s in settings.scales],
            "flip": settings.flip,
            "crf": settings.crf,
            "image_labels": source.name,
            **({"label_threshold": source.threshold} if source.name == "predicted" else {}),
        },
        **(dict(extra_report) if extra_report else {}),
        **final.report(class_names),
    }
    if settings.crf:
        report["thresholded"] = before.report(class_names)
    return report


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
    source = _LabelSource.for_dataset(dataset, labels, from_masks, num_classes, ignore_index, label_threshold)
    # An encoder of cct_train knows its output stride; any other module gets the maps resized as before.
    stride = getattr(classifier.encoder, "output_stride", None)
    settings = _MapSettings(
        theta_bg, theta_fg, background_index, scales, flip, crf, workers, block_size, ignore_index, stride
    )
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    model = classifier.to(dev).eval()
    normalize = Normalize(*normalization).to(dev)
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    final, before = _label_batches(model, loader, normalize, dev, source, settings, out_dir, colours, quiet)
    report = _report(len(dataset), names_, settings, source, extra_report, final, before)
    report["seconds"] = time.perf_counter() - started
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    return report
