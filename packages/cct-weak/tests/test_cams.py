from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from cct_weak import CAMClassifier, compute_cams, normalize_cams


@pytest.fixture
def model(make_encoder: Callable[..., nn.Module]) -> CAMClassifier:
    torch.manual_seed(0)
    return CAMClassifier(make_encoder(width=4), num_classes=4)


def test_range_absent_classes_and_mode_restored(model: CAMClassifier) -> None:
    model.train()
    images = torch.randn(3, 3, 16, 24)
    labels = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]])
    cams = compute_cams(model, images, labels)
    assert cams.shape == (3, 4, 16, 24)
    assert cams.dtype == torch.float32
    assert bool((cams >= 0).all())
    assert bool((cams <= 1).all())
    absent = (labels == 0)[:, :, None, None].expand_as(cams)
    assert bool((cams[absent] == 0).all())
    peaks = cams.amax(dim=(2, 3))
    present_nonzero = (labels > 0) & (peaks > 0)
    torch.testing.assert_close(peaks[present_nonzero], torch.ones_like(peaks[present_nonzero]))
    assert model.training
    assert not cams.requires_grad


def test_flip_invariance_on_symmetric_input(model: CAMClassifier) -> None:
    half = torch.randn(2, 3, 12, 8)
    images = torch.cat([half, half.flip(-1)], dim=-1)  # mirror-symmetric
    cams = compute_cams(model, images, None, scales=(1.0, 0.5, 1.5), flip=True)
    torch.testing.assert_close(cams, cams.flip(-1), atol=1e-5, rtol=1e-5)
    # And with flips, any image's CAMs are the mirror of its mirror image's CAMs.
    x = torch.randn(2, 3, 12, 16)
    torch.testing.assert_close(
        compute_cams(model, x, None, scales=(1.0, 2.0)),
        compute_cams(model, x.flip(-1), None, scales=(1.0, 2.0)).flip(-1),
        atol=1e-5,
        rtol=1e-5,
    )


def test_scales_and_output_size(model: CAMClassifier) -> None:
    x = torch.randn(2, 3, 10, 14)
    single = compute_cams(model, x, None, scales=(1.0,), flip=False)
    multi = compute_cams(model, x, None, scales=(1.0, 0.5, 1.5, 2.0), flip=False)
    assert single.shape == multi.shape == (2, 4, 10, 14)
    assert not torch.allclose(single, multi)
    out = compute_cams(model, x, None, scales=(0.3, 1.0), output_size=(7, 9))
    assert out.shape == (2, 4, 7, 9)
    # Single scale without flip = the normalised, upsampled CAMs of the model.
    raw = torch.nn.functional.interpolate(model.cams(x), size=(10, 14), mode="bilinear", align_corners=False)
    torch.testing.assert_close(single, normalize_cams(raw.detach()), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        compute_cams(model, x, None, scales=())


def test_normalize_cams_zero_safe() -> None:
    cams = torch.zeros(1, 2, 3, 3)
    cams[0, 1, 1, 1] = 4.0
    cams[0, 1, 0, 0] = -2.0
    out = normalize_cams(cams)
    assert not bool(out.isnan().any())
    assert float(out[0, 0].max()) == 0.0
    assert float(out[0, 1, 1, 1]) == 1.0
    assert float(out[0, 1, 0, 0]) == 0.0
