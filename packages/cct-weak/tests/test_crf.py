from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import cct_weak
from cct_weak import crf_refine, is_crf_available, refine_many, refine_pseudo_labels

needs_crf = pytest.mark.skipif(not is_crf_available(), reason="pydensecrf not installed")

H, W = 32, 40


def two_colour(seed: int = 0, flip_rate: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = (220, 30, 30)
    img[:, W // 2 :] = (30, 30, 220)
    img = np.clip(img.astype(int) + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)
    true = np.zeros((H, W), np.int64)
    true[:, W // 2 :] = 1
    noisy = true.copy()
    flip = rng.random((H, W)) < flip_rate
    noisy[flip] = 1 - noisy[flip]
    return img, true, noisy


@needs_crf
def test_crf_improves_noisy_labels() -> None:
    img, true, noisy = two_colour()
    before = (noisy == true).mean()
    out = crf_refine(img, noisy, num_classes=2)
    assert out.shape == (H, W)
    assert out.dtype == np.int64
    assert (out == true).mean() > before
    assert (out == true).mean() > 0.95


@needs_crf
def test_crf_from_probabilities() -> None:
    img, true, noisy = two_colour(1)
    probs = np.stack([noisy == 0, noisy == 1]).astype(np.float32) * 0.4 + 0.3
    out = crf_refine(img, probs, num_classes=2)
    assert (out == true).mean() > (noisy == true).mean()


@needs_crf
def test_crf_ignore_handling_and_class_indices() -> None:
    img, true, _noisy = two_colour(2)
    labels = np.where(true == 1, 3, 1)  # classes 1 and 3 of 5 present
    labels[8:16, 4:12] = 255  # a hole in the left (class 1) half
    out = crf_refine(img, labels, num_classes=5)
    assert set(np.unique(out).tolist()) <= {1, 3}  # absent classes never appear
    assert (out[8:16, 4:12] == 1).all()  # filled from the neighbours
    everything_ignored = np.full((H, W), 255)
    assert (crf_refine(img, everything_ignored, 5) == 255).all()
    assert (crf_refine(img, np.where(true == 1, 255, 2), 5) == 2).all()
    with pytest.raises(ValueError):
        crf_refine(img, np.full((H, W), 7), 5)
    with pytest.raises(ValueError):
        crf_refine(img[:-1], labels, 5)


@needs_crf
def test_refine_pseudo_labels_disagreement_is_ignored() -> None:
    img, true, noisy = two_colour(3)
    noisy[:4, :4] = 255
    crf = crf_refine(img, noisy, 2)
    out = refine_pseudo_labels(img, noisy, 2)
    labelled = noisy != 255
    disagree = labelled & (crf != noisy)
    assert disagree.any()
    assert (out[disagree] == 255).all()
    assert (out[labelled & ~disagree] == noisy[labelled & ~disagree]).all()
    assert (out[~labelled] == 255).all()
    # The flipped labels are what the CRF rejects: what remains is (almost) all correct.
    kept = out != 255
    assert (out[kept] == true[kept]).mean() > 0.99
    filled = refine_pseudo_labels(img, torch.from_numpy(noisy), 2, fill_ignored=True)
    assert (filled[:4, :4] == crf[:4, :4]).all()


@needs_crf
def test_refine_many_inline_and_workers_agree() -> None:
    items = [two_colour(seed) for seed in range(3)]
    images = [i[0] for i in items]
    labels = [i[2] for i in items]
    seen: list[int] = []
    inline = refine_many(images, labels, 2, workers=0, progress=seen.append, iterations=5)
    assert sum(seen) == 3
    pooled = refine_many(images, labels, 2, workers=2, chunksize=1, iterations=5)
    assert len(inline) == len(pooled) == 3
    for a, b, img, lab in zip(inline, pooled, images, labels, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, refine_pseudo_labels(img, lab, 2, iterations=5))
    with pytest.raises(ValueError):
        refine_many(images, labels[:2], 2)


def test_missing_pydensecrf_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    for name in ("pydensecrf.densecrf", "pydensecrf.utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert not is_crf_available()
    img, _, noisy = two_colour()
    with pytest.raises(ImportError, match=r"pip install './packages/cct-weak\[crf\]'") as err:
        crf_refine(img, noisy, 2)
    assert "pip install pydensecrf2" in str(err.value)
    with pytest.raises(ImportError, match="pydensecrf"):
        refine_many([img], [noisy], 2)
    # Everything else still works.
    cams = torch.rand(1, 3, 4, 4)
    assert cct_weak.cams_to_pseudo_labels(cams).shape == (1, 4, 4)
