"""CAMs to pseudo-labels (paper 3.3): batched multi-scale CAMs on the device, thresholds, a dense CRF in
worker processes, index PNGs and a report.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress

from cct_train.common.progress import console, progress_columns
from cct_train.data import IGNORE_INDEX, Normalize, build_loader, default_palette
from cct_train.data.pseudo import pseudo_label_path
from cct_train.eval.metrics import confusion_matrix, scores_from_confusion
from cct_train.models.encoders import IMAGENET_MEAN, IMAGENET_STD
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
    lookup: LabelLookup | None = None
    if labels is not None:
        missing = [n for n in dataset.names if n not in labels]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) have no image-level labels, e.g. {missing[:5]} "
                "(restrict the images with --names, or add them to the labels file)"
            )
        lookup = LabelLookup(list(dataset.names), labels, num_classes)
    label_source = "file" if lookup is not None else "masks" if from_masks else "predicted"

    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
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
        Progress(*progress_columns(), console=console, transient=quiet, disable=quiet) as bars,  # type: ignore[arg-type]
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
