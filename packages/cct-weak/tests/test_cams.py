from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
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


class _PoolCAM(torch.nn.Module):
    """A CAM 'model' whose class-0 map is the mean of channel 0 over each stride x stride cell, the cells
    laid from the top-left corner with the last ones cut by the image border (as a padded conv encoder)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x[:, :1], self.stride, self.stride, ceil_mode=True)


def _crossing(profile: torch.Tensor) -> float:
    """The first fractional index where a rising 1-D profile reaches 0.5 (linear between samples)."""
    i = int(torch.nonzero(profile >= 0.5)[0])
    a, b = float(profile[i - 1]), float(profile[i])
    return i - 1 + (0.5 - a) / (b - a)


@pytest.mark.parametrize("flip", [False, True])
def test_stride_keeps_the_last_rows_aligned_at_sizes_not_a_multiple_of_it(flip: bool) -> None:
    # 181 x 243 at stride 8: 23 x 31 cells cover 184 x 248 pixels. An object in the last 13 rows and the
    # last 19 columns starts at row 168 / column 224; the CAM must rise there, not where squeezing 184
    # rows into 181 puts it (168 * 181 / 184 = 165.3).
    images = torch.zeros(1, 3, 181, 243)
    images[:, :, 168:, 224:] = 1.0
    model = _PoolCAM(8)
    aligned = compute_cams(model, images, None, scales=(1.0,), flip=flip, stride=8)[0, 0]
    squeezed = compute_cams(model, images, None, scales=(1.0,), flip=flip)[0, 0]
    assert aligned.shape == squeezed.shape == (181, 243)
    assert abs(_crossing(aligned[:, -1]) - 167.5) <= 1.0
    assert abs(_crossing(aligned[-1, :]) - 223.5) <= 1.0
    assert abs(_crossing(squeezed[:, -1]) - 167.5) > 2.0  # what the stride fixes


def test_stride_at_a_multiple_of_it_is_the_plain_upsampling() -> None:
    images = torch.rand(2, 3, 64, 48)
    model = _PoolCAM(8)
    with_stride = compute_cams(model, images, None, scales=(1.0,), flip=False, stride=8)
    plain = compute_cams(model, images, None, scales=(1.0,), flip=False)
    torch.testing.assert_close(with_stride, plain)


def test_stride_with_scales_and_output_size() -> None:
    images = torch.rand(2, 3, 45, 61)
    cams = compute_cams(
        _PoolCAM(4), images, None, scales=(1.0, 0.5, 1.5), flip=True, stride=4, output_size=(30, 40)
    )
    assert cams.shape == (2, 1, 30, 40)
    assert float(cams.min()) >= 0.0
    assert float(cams.max()) <= 1.0


def test_stride_larger_than_the_model_gives_a_clear_error() -> None:
    with pytest.raises(ValueError, match="stride=2"):
        compute_cams(_PoolCAM(8), torch.rand(1, 3, 40, 40), None, scales=(1.0,), flip=False, stride=2)
    with pytest.raises(ValueError, match="positive"):
        compute_cams(_PoolCAM(8), torch.rand(1, 3, 40, 40), None, stride=0)
