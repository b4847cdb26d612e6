from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cct_perturb import (
    FeatureDrop,
    FeatureNoise,
    SpatialDropout,
    feature_drop,
    feature_noise,
    spatial_dropout,
)


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- F-Noise
@settings(max_examples=25, deadline=None)
@given(r=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0))
def test_feature_noise_bounded(r: float, seed: int, scale: float) -> None:
    z = torch.randn(2, 5, 6, 7, generator=g(seed)) * scale
    out = feature_noise(z, r, generator=g(seed + 1))
    # up to one float32 rounding of the result
    assert torch.all((out - z).abs() <= r * z.abs() + 2e-7 * z.abs() + 1e-12)


def test_feature_noise_zero_stays_zero_and_r0_identity() -> None:
    z = torch.randn(2, 3, 4, 4)
    z[:, 0] = 0
    out = feature_noise(z, generator=g(0))
    assert torch.all(out[:, 0] == 0)
    assert torch.equal(feature_noise(z, 0.0, generator=g(0)), z)


def test_feature_noise_uses_the_range() -> None:
    z = torch.ones(4, 64, 10, 10)
    ratio = feature_noise(z, 0.3, generator=g(0)) - 1
    assert ratio.min() < -0.28
    assert ratio.max() > 0.28
    assert abs(ratio.mean().item()) < 0.01


def test_feature_noise_is_uniform_and_independent() -> None:
    """The CPU draws 16 random bits per element, four elements per int64 draw: the noise must still be
    U(-r, r) on a grid of 65536 levels, symmetric, and neighbours (lanes of one draw) uncorrelated."""
    r = 0.3
    z = torch.ones(4, 64, 32, 32)
    noise = (feature_noise(z, r, generator=g(1)) - 1).double().flatten()
    levels = noise / (2 * r / 65536) - 0.5
    assert torch.allclose(levels, levels.round(), atol=1e-2)
    assert levels.min() >= -32768
    assert levels.max() <= 32767
    counts = torch.histc(noise, bins=20, min=-r, max=r)
    expected = noise.numel() / 20
    assert torch.all((counts - expected).abs() < 5 * expected**0.5), counts  # 5 sigma
    assert abs(noise.mean().item()) < 5 * r / (3 * noise.numel()) ** 0.5
    assert abs(noise.std().item() - r / 3**0.5) < 1e-3
    for lag in (1, 2, 3, 4):  # lanes of one 64-bit word, and the next word
        corr = torch.corrcoef(torch.stack([noise[:-lag], noise[lag:]]))[0, 1]
        assert abs(corr.item()) < 5 / noise.numel() ** 0.5, (lag, corr)
    # an odd number of elements (not a multiple of four lanes) and every dtype
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        odd = torch.ones(3, 5, 7, 3, dtype=dtype)
        out = feature_noise(odd, r, generator=g(2))
        assert out.dtype == dtype
        assert torch.all((out.double() - 1).abs() <= r + 1e-2)
        assert torch.equal(out, feature_noise(odd, r, generator=g(2)))


def test_feature_noise_per_sample() -> None:
    z = torch.randn(1, 8, 5, 5).expand(3, -1, -1, -1).contiguous()
    out = feature_noise(z, generator=g(0))
    assert not torch.equal(out[0], out[1])
    assert not torch.equal(out[1], out[2])


def test_feature_noise_keeps_graph() -> None:
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    feature_noise(z).sum().backward()
    assert z.grad is not None
    assert torch.all(z.grad > 0.69)
    assert torch.all(z.grad < 1.31)


def test_feature_noise_negative_range_rejected() -> None:
    with pytest.raises(ValueError):
        feature_noise(torch.zeros(1, 1, 2, 2), -0.1)
    with pytest.raises(ValueError):
        FeatureNoise(-1.0)


# ---------------------------------------------------------------- F-Drop
def _normalised_attention(z: torch.Tensor) -> torch.Tensor:
    a = z.float().mean(1)
    flat = a.flatten(1)
    lo = flat.min(1).values.clamp(max=0)[:, None, None]
    hi = flat.max(1).values[:, None, None]
    return (a - lo) / (hi - lo)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), relu=st.booleans())
def test_feature_drop_drops_exactly_above_threshold(seed: int, relu: bool) -> None:
    z = torch.randn(3, 6, 9, 11, generator=g(seed))
    if relu:
        z = z.relu() + 0.01
    out = feature_drop(z, generator=g(seed + 1))
    zn = _normalised_attention(z)
    dropped = (out == 0).all(1) & (z != 0).any(1)
    kept = (out == z).all(1)
    assert torch.all(dropped | kept)
    # gamma in [0.6, 0.9]: everything below 0.6 kept, everything at or above 0.9 dropped.
    assert torch.all(kept[zn < 0.6])
    assert torch.all(dropped[zn >= 0.9])
    # A single threshold per sample separates kept from dropped.
    for b in range(3):
        if dropped[b].any():
            assert zn[b][kept[b]].max() < zn[b][dropped[b]].min()
            assert zn[b][dropped[b]].min() >= 0.6 - 1e-6


def test_feature_drop_fraction_of_active_range() -> None:
    # Uniform attention values: the dropped fraction equals 1 - gamma, between 10% and 40%.
    values = torch.linspace(0, 1, 10000).view(1, 1, 100, 100)
    z = values.expand(16, 4, 100, 100).contiguous()
    out = feature_drop(z, generator=g(0))
    frac = (out[:, 0] == 0).flatten(1).float().mean(1) - 1e-4  # the one exact zero at position 0
    assert torch.all(frac >= 0.1 - 1e-3)
    assert torch.all(frac <= 0.4 + 1e-3)


def test_feature_drop_all_zero_and_constant() -> None:
    z = torch.zeros(2, 3, 4, 4)
    out = feature_drop(z, generator=g(0))
    assert torch.equal(out, z)
    assert not torch.isnan(out).any()
    # A positive constant map: every position is the most active one, dropped as by the original's
    # `attention < max * gamma`.
    c = torch.full((2, 3, 4, 4), 2.5)
    assert torch.equal(feature_drop(c, generator=g(0)), torch.zeros_like(c))


def test_feature_drop_non_negative_map_is_divided_by_its_max() -> None:
    # Attention from 0.5 to 1.0: z' = a / max, so with gamma = 0.8 the positions with a >= 0.8 drop.
    values = torch.linspace(0.5, 1.0, 101).view(1, 1, 1, 101)
    out = feature_drop(values, (0.8, 0.8))
    assert torch.equal(out[0, 0, 0] == 0, values[0, 0, 0] >= 0.8)


def test_feature_drop_per_sample_gamma() -> None:
    values = torch.linspace(0, 1, 400).view(1, 1, 20, 20)
    z = values.expand(6, 2, 20, 20).contiguous()
    out = feature_drop(z, generator=g(3))
    counts = (out[:, 0] == 0).flatten(1).sum(1)
    assert len(set(counts.tolist())) > 1


def test_feature_drop_gamma_range_parameter() -> None:
    values = torch.linspace(0, 1, 400).view(1, 1, 20, 20).expand(2, 2, 20, 20).contiguous()
    out = feature_drop(values, (0.5, 0.5), generator=g(0))
    zn = _normalised_attention(values)
    assert torch.equal(out[:, 0] == 0, (zn >= 0.5) | (values[:, 0] == 0))
    with pytest.raises(ValueError):
        FeatureDrop((0.9, 0.6))


# ---------------------------------------------------------------- DropOut
def test_spatial_dropout_whole_channels_and_scale() -> None:
    z = torch.rand(4, 64, 5, 5) + 0.1
    out = spatial_dropout(z, 0.5, generator=g(0))
    per_channel_zero = (out == 0).all(-1).all(-1)
    per_channel_scaled = torch.isclose(out, z * 2).all(-1).all(-1)
    assert torch.all(per_channel_zero | per_channel_scaled)
    frac = per_channel_zero.float().mean().item()
    assert 0.35 < frac < 0.65
    # per sample: not the same channels in every sample
    assert not torch.equal(per_channel_zero[0], per_channel_zero[1])


def test_spatial_dropout_p0_identity_p1_zero() -> None:
    z = torch.randn(2, 8, 3, 3)
    assert torch.equal(spatial_dropout(z, 0.0, generator=g(0)), z)
    assert torch.all(spatial_dropout(z, 1.0, generator=g(0)) == 0)
    with pytest.raises(ValueError):
        spatial_dropout(z, 1.5)


def test_spatial_dropout_module_applies_in_eval_mode() -> None:
    z = torch.rand(2, 32, 3, 3) + 0.1
    m = SpatialDropout(0.5).eval()
    assert not torch.equal(m(z, generator=g(0)), z)
    assert torch.equal(m(z, generator=g(0)), spatial_dropout(z, 0.5, generator=g(0)))


def test_feature_modules_match_functions() -> None:
    z = torch.randn(2, 4, 6, 6)
    assert torch.equal(FeatureNoise(0.2)(z, generator=g(1)), feature_noise(z, 0.2, generator=g(1)))
    assert torch.equal(
        FeatureDrop((0.7, 0.8))(z, generator=g(1)), feature_drop(z, (0.7, 0.8), generator=g(1))
    )
