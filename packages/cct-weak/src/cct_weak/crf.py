"""Dense-CRF refinement of pseudo-labels (optional: needs ``pydensecrf``, the ``crf`` extra).

``pydensecrf`` is imported lazily inside the functions that need it, so everything else in
``cct_weak`` works without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CRF_INSTALL_HINT", "crf_refine", "is_crf_available", "refine_many", "refine_pseudo_labels"]

CRF_INSTALL_HINT = (
    "crf_refine needs pydensecrf, which is not installed. Install the optional extra with "
    "`pip install pydensecrf2` (or, from the repository, the extra: `pip install './packages/cct-weak[crf]'`)."
)


def is_crf_available() -> bool:
    """Whether ``pydensecrf`` can be imported (i.e. :func:`crf_refine` works)."""
    try:
        _import_pydensecrf()
    except ImportError:
        return False
    return True


def _import_pydensecrf() -> tuple[Any, Any]:
    try:
        import pydensecrf.densecrf as densecrf
        import pydensecrf.utils as crf_utils
    except ImportError as err:
        raise ImportError(CRF_INSTALL_HINT) from err
    return densecrf, crf_utils


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array, a PIL image or a (CPU or device) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_rgb(image: Any, shape: tuple[int, int]) -> np.ndarray:
    img = _to_numpy(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {img.shape}")
    if img.shape[:2] != shape:
        raise ValueError(f"image is {img.shape[:2]} but the labels are {shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    return np.ascontiguousarray(img)


def crf_refine(
    image: npt.ArrayLike,
    labels_or_probs: npt.ArrayLike,
    num_classes: int,
    iterations: int = 10,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 50,
    bilateral_srgb: float = 5,
    bilateral_compat: float = 10,
    ignore_index: int = 255,
    gt_prob: float = 0.7,
) -> np.ndarray:
    """Refine one label map (or class probabilities) with a fully connected CRF (Krähenbühl & Koltun 2011).

    Defaults are those of the original CCT pipeline: 10 mean-field iterations, a Gaussian kernel
    (sxy 3, compat 3) and a bilateral kernel (sxy 50, srgb 5, compat 10).

    Unary term:

    - from a label map :math:`(H, W)` (integer): ``pydensecrf.utils.unary_from_labels`` with probability
      ``gt_prob`` on the given label; ``ignore_index`` pixels get a uniform unary ("unsure"), so the CRF
      fills them from their neighbours. Only the classes present in the map compete (an absent class can
      never appear); with a single present class every pixel gets it; with no labelled pixel at all the
      map is returned unchanged (all ``ignore_index``).
    - from probabilities :math:`(C, H, W)` (floating point, ``C = num_classes``):
      ``pydensecrf.utils.unary_from_softmax``.

    Args:
        image: RGB image :math:`(H, W, 3)`, uint8 (numpy array, PIL image or tensor).
        labels_or_probs: int label map :math:`(H, W)` or float probabilities :math:`(C, H, W)`.
        num_classes: ``C``; labels must lie in ``[0, C)`` or equal ``ignore_index``.
        iterations: mean-field iterations.
        gaussian_sxy: spatial std of the smoothness kernel.
        gaussian_compat: weight of the smoothness kernel (Potts compatibility).
        bilateral_sxy: spatial std of the appearance kernel.
        bilateral_srgb: colour std of the appearance kernel.
        bilateral_compat: weight of the appearance kernel.
        ignore_index: label of unknown pixels in a label map.
        gt_prob: confidence in the given labels, in (0, 1) (label-map input only).

    Returns:
        int64 refined labels :math:`(H, W)` in ``[0, C)``.

    Raises:
        ImportError: when ``pydensecrf`` is missing, saying how to install it.
    """
    densecrf, crf_utils = _import_pydensecrf()
    arr = _to_numpy(labels_or_probs)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 < gt_prob < 1.0:
        raise ValueError(f"gt_prob must be in (0, 1), got {gt_prob}")

    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"a label map must hold integers, got {arr.dtype}")
        h, w = arr.shape
        lab = arr.astype(np.int64)
        valid = lab != ignore_index
        if np.any(valid & ((lab < 0) | (lab >= num_classes))):
            raise ValueError(f"labels must be in [0, {num_classes}) or ignore_index={ignore_index}")
        present = np.unique(lab[valid])
        if present.size == 0:
            return lab.copy()
        if present.size == 1:
            return np.full((h, w), present[0], dtype=np.int64)
        # Compact labels 1..K over the present classes; 0 = unsure (uniform unary).
        lut = np.zeros(num_classes, dtype=np.int64)
        lut[present] = np.arange(1, present.size + 1)
        compact = np.where(valid, lut[np.where(valid, lab, 0)], 0)
        n = int(present.size)
        unary = crf_utils.unary_from_labels(compact, n, gt_prob=gt_prob, zero_unsure=True)
        classes = present.astype(np.int64)
    elif arr.ndim == 3:
        if arr.shape[0] != num_classes:
            raise ValueError(f"probabilities must be (C={num_classes}, H, W), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"probabilities must be floating point, got {arr.dtype}")
        n, h, w = arr.shape
        unary = crf_utils.unary_from_softmax(arr.astype(np.float32))
        classes = np.arange(n, dtype=np.int64)
    else:
        raise ValueError(f"labels_or_probs must be (H, W) labels or (C, H, W) probabilities, got {arr.shape}")

    rgb = _as_rgb(image, (h, w))
    crf = densecrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=rgb, compat=bilateral_compat)
    q = np.asarray(crf.inference(int(iterations)), dtype=np.float32).reshape(n, h, w)
    return classes[q.argmax(axis=0)]


def refine_pseudo_labels(
    image: npt.ArrayLike,
    pseudo: npt.ArrayLike,
    num_classes: int,
    *,
    fill_ignored: bool = False,
    ignore_index: int = 255,
    **crf_kwargs: Any,
) -> np.ndarray:
    """CRF-refine a thresholded pseudo-label map and ignore the pixels where the CRF disagrees with it.

    A labelled pixel keeps its label when the CRF agrees, and becomes ``ignore_index`` otherwise
    (DESIGN / paper 3.3: the CRF acts as a consistency filter). An ignored input pixel has nothing to
    agree with, so it stays ignored, unless ``fill_ignored=True``, which takes the CRF's label there.

    Args:
        image: RGB image :math:`(H, W, 3)`, uint8.
        pseudo: thresholded pseudo-labels :math:`(H, W)`, e.g. from :func:`cct_weak.cams_to_pseudo_labels`.
        num_classes: ``C``.
        fill_ignored: let the CRF label the input's ignored pixels.
        ignore_index: label of ignored pixels.
        **crf_kwargs: passed to :func:`crf_refine` (``iterations``, ``gaussian_sxy``, ``gt_prob``...).

    Returns:
        int64 labels :math:`(H, W)`.
    """
    lab = _to_numpy(pseudo).astype(np.int64)
    refined = crf_refine(image, lab, num_classes, ignore_index=ignore_index, **crf_kwargs)
    out = np.where(refined == lab, lab, ignore_index)
    ignored = lab == ignore_index
    out[ignored] = refined[ignored] if fill_ignored else ignore_index
    return out.astype(np.int64)


def _refine_chunk(
    items: Sequence[tuple[Any, Any]], num_classes: int, kwargs: dict[str, Any]
) -> list[np.ndarray]:
    return [refine_pseudo_labels(img, lab, num_classes, **kwargs) for img, lab in items]


def _chunks(
    images: Sequence[Any], labels: Sequence[Any], size: int
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    for start in range(0, len(images), size):
        stop = min(start + size, len(images))
        yield [(_to_numpy(images[i]), _to_numpy(labels[i])) for i in range(start, stop)]


def refine_many(
    images: Sequence[npt.ArrayLike],
    pseudo_labels: Sequence[npt.ArrayLike],
    num_classes: int,
    workers: int = 0,
    *,
    chunksize: int = 4,
    progress: Callable[[int], None] | None = None,
    mp_context: Any = None,
    **crf_kwargs: Any,
) -> list[np.ndarray]:
    """:func:`refine_pseudo_labels` over many images, optionally in worker processes.

    Args:
        images: RGB images, each :math:`(H_i, W_i, 3)` uint8.
        pseudo_labels: the matching thresholded maps, each :math:`(H_i, W_i)` (a :math:`(B, H, W)` tensor
            works too).
        num_classes: ``C``.
        workers: number of worker processes (``concurrent.futures.ProcessPoolExecutor``); ``0`` runs inline
            in this process.
        chunksize: images per task sent to a worker.
        progress: called with the number of images just finished (an increment, e.g. ``tqdm(...).update``).
        mp_context: optional ``multiprocessing`` context (e.g. ``multiprocessing.get_context("spawn")``).
        **crf_kwargs: :func:`refine_pseudo_labels` / :func:`crf_refine` keywords (``fill_ignored``,
            ``iterations``, ``ignore_index``...).

    Returns:
        the refined maps, in input order, each int64 :math:`(H_i, W_i)`.

    Raises:
        ImportError: when ``pydensecrf`` is missing (checked before any worker starts).
    """
    if len(images) != len(pseudo_labels):
        raise ValueError(f"{len(images)} images but {len(pseudo_labels)} label maps")
    if workers < 0 or chunksize < 1:
        raise ValueError(f"need workers >= 0 and chunksize >= 1, got {workers} and {chunksize}")
    _import_pydensecrf()
    run = functools.partial(_refine_chunk, num_classes=num_classes, kwargs=crf_kwargs)
    results: list[np.ndarray] = []
    chunks = _chunks(images, pseudo_labels, chunksize)
    if workers == 0 or len(images) <= 1:
        for chunk in chunks:
            results.extend(run(chunk))
            if progress is not None:
                progress(len(chunk))
        return results
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp_context) as pool:
        for done in pool.map(run, chunks):
            results.extend(done)
            if progress is not None:
                progress(len(done))
    return results
