"""What a user dropping cct-perturb into another codebase relies on (issue 17's frictions)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cct_perturb
from cct_perturb import (
    PERTURBATIONS,
    ContextMask,
    GuidedCutout,
    ObjectMask,
    SpatialDropout,
    context_mask,
    create_perturbation,
    feature_drop,
    feature_noise,
    guided_cutout,
    guided_cutout_mask,
    nearest_resize,
    object_mask,
    spatial_dropout,
)


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels.long(), c).permute(0, 3, 1, 2).float() * 5.0


def _realistic() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(2, 256, 8, 8, generator=g(0)).relu()
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 8:40, 8:40] = 3
    return z, _logits(labels, 21)


# ---------------------------------------------------------------- friction 3: registry names
def test_function_names_resolve_in_the_registry() -> None:
    assert PERTURBATIONS["spatial_dropout"] is SpatialDropout
    assert "spatial_dropout" in PERTURBATIONS
    assert PERTURBATIONS.get("spatial_dropout") is SpatialDropout
    m = create_perturbation("spatial_dropout", p=0.3)
    assert isinstance(m, SpatialDropout)
    assert m.p == 0.3
    # the listed names stay the paper's seven
    assert sorted(PERTURBATIONS) == sorted(
        ["feature_noise", "feature_drop", "dropout", "object_mask", "context_mask", "guided_cutout", "vat"]
    )
    assert "nope" not in PERTURBATIONS
    assert PERTURBATIONS.get("nope") is None
    with pytest.raises(KeyError):
        PERTURBATIONS["nope"]
    with pytest.raises(ValueError, match="spatial_dropout -> dropout"):
        create_perturbation("nope")
    # every function of the package resolves under its own name
    for fn in [
        "feature_noise",
        "feature_drop",
        "spatial_dropout",
        "object_mask",
        "context_mask",
        "guided_cutout",
        "vat",
    ]:
        assert fn in PERTURBATIONS, fn
        assert callable(getattr(cct_perturb, fn))


# ---------------------------------------------------------------- friction 4: masks take generator=
@pytest.mark.parametrize(("fn", "module"), [(object_mask, ObjectMask), (context_mask, ContextMask)])
def test_masks_accept_a_generator_like_their_modules(fn, module) -> None:  # type: ignore[no-untyped-def]
    z, pred = _realistic()
    ref = fn(z, pred)
    assert torch.equal(fn(z, pred, generator=g(0)), ref)
    assert torch.equal(module()(z, pred, generator=g(0)), ref)
    with pytest.raises(TypeError, match=r"`generator` must be a torch.Generator or None, got int"):
        fn(z, pred, generator=0)


# ---------------------------------------------------------------- friction 5: argument checks
@pytest.mark.parametrize("fn", [object_mask, context_mask, guided_cutout])
def test_swapped_features_and_prediction_are_named(fn) -> None:  # type: ignore[no-untyped-def]
    z, pred = _realistic()
    with pytest.raises(ValueError, match=r"arguments look swapped; the order is \w+\(z, pred\)"):
        fn(pred, z)
    with pytest.raises(TypeError, match=r"`pred` must be the main decoder's logits \(B, C, H, W\)"):
        fn(z, [pred])
    with pytest.raises(TypeError, match=r"3-d `pred` must be an integer class map \(B, H, W\)"):
        fn(z, pred[:, 0])
    with pytest.raises(TypeError, match=r"4-d `pred` must be floating-point logits"):
        fn(z, pred.long())
    with pytest.raises(ValueError, match="batch sizes differ"):
        fn(z, pred[:1])
    with pytest.raises(TypeError, match=r"`z` must be a features tensor \(B, D, h, w\), got ndarray"):
        fn(z.numpy(), pred)
    with pytest.raises(TypeError, match=r"`z` must be floating-point features"):
        fn(z.long(), pred)


def test_a_generator_passed_positionally_is_named() -> None:
    z, pred = _realistic()
    gen = torch.Generator()
    for call in [
        lambda: feature_noise(z, gen),  # type: ignore[arg-type]
        lambda: feature_drop(z, gen),  # type: ignore[arg-type]
        lambda: spatial_dropout(z, gen),  # type: ignore[arg-type]
        lambda: object_mask(z, pred, gen),  # type: ignore[arg-type]
        lambda: context_mask(z, pred, gen),  # type: ignore[arg-type]
        lambda: guided_cutout(z, pred, gen),  # type: ignore[arg-type]
    ]:
        with pytest.raises(TypeError, match="pass a generator as generator="):
            call()
    with pytest.raises(TypeError, match=r"`gamma_range` must be a pair \(low, high\), got float"):
        feature_drop(z, 0.7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`background` must hold integer class indices"):
        object_mask(z, pred, (0.5,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`min_region` must be None or an int"):
        guided_cutout(z, pred, min_region=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`rounding` must be 'round' or 'stochastic'"):
        GuidedCutout(rounding="ceil")  # type: ignore[arg-type]
    # integer-like backgrounds still work (numpy / tensor indices, lists from YAML)
    ref = object_mask(z, pred, (0,))
    assert torch.equal(object_mask(z, pred, torch.tensor([0])), ref)
    assert torch.equal(object_mask(z, pred, [0]), ref)


# ---------------------------------------------------------------- friction 6: nearest_resize exported
def test_nearest_resize_is_exported_and_exact() -> None:
    assert "nearest_resize" in cct_perturb.__all__
    x = torch.randint(0, 9, (2, 3, 37, 53))
    for size in [(8, 8), (37, 53), (50, 70), (5, 61)]:
        ref = F.interpolate(x.float(), size=size, mode="nearest").long()
        assert torch.equal(nearest_resize(x, size), ref)


# ---------------------------------------------------------------- friction 7: G-Cutout at any stride
def _square(crop: int, side: int, stride: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A side x side object at the prediction's (input) resolution and features at 1/stride."""
    labels = torch.zeros(batch, crop, crop, dtype=torch.long)
    labels[:, 16 : 16 + side, 16 : 16 + side] = 1
    h = -(-crop // stride)
    return torch.ones(batch, 4, h, h), _logits(labels, 2)


@pytest.mark.filterwarnings("ignore:guided_cutout. a batch with objects got no cut")  # the 8-pixel default
@pytest.mark.parametrize(("crop", "side"), [(161, 32), (161, 64), (97, 40)])
def test_objects_are_cut_at_stride_16(crop: int, side: int) -> None:
    z, pred = _square(crop, side, 16)
    erased = [(guided_cutout(z, pred, stride=16, generator=g(s))[0, 0] == 0).sum().item() for s in range(8)]
    assert min(erased) >= 1, erased
    assert torch.equal(
        GuidedCutout(stride=16)(z, pred, generator=g(3)), guided_cutout(z, pred, stride=16, generator=g(3))
    )
    # without stride= the paper's stride 8 is assumed (8 feature pixels): the 32x32 object (2x2 = 4 feature
    # pixels at stride 16) is not cut
    if side == 32:
        assert torch.equal(guided_cutout(z, pred, generator=g(0)), z)


def test_stride_8_default_matches_the_former_threshold() -> None:
    """At stride 8 the default min_area (512 input pixels) is the former min_region=8 feature pixels."""
    for side in (16, 20, 23, 24, 40):  # 2x2 ... 5x5 feature pixels: across the threshold of 8
        z, pred = _square(96, side, 8, batch=2)
        for seed in range(2):
            assert torch.equal(
                guided_cutout(z, pred, generator=g(seed)),
                guided_cutout(z, pred, min_region=8, generator=g(seed)),
            )
    z, pred = _square(96, 16, 8)  # 2x2 feature pixels: below 8
    assert torch.equal(guided_cutout(z, pred, generator=g(0)), z)
    assert not torch.equal(guided_cutout(z, pred, min_area=200, generator=g(0)), z)
    # a class map at z's own size tells no stride: stride 8 is assumed (8 feature pixels)
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, 2:4, 2:6] = 1  # 8 pixels
    assert not torch.equal(
        guided_cutout(torch.ones(1, 1, 10, 10), labels, generator=g(0)), torch.ones(1, 1, 10, 10)
    )
    labels[0, 3, 5] = 0  # 7 pixels
    assert torch.equal(
        guided_cutout(torch.ones(1, 1, 10, 10), labels, generator=g(0)), torch.ones(1, 1, 10, 10)
    )


def test_stochastic_rounding_keeps_the_expected_erased_fraction() -> None:
    """2x2 boxes, erase 0.4: 'round' erases 1 pixel (25%); 'stochastic' 0.64 on average (16%, erase**2)."""
    labels = torch.zeros(400, 4, 4, dtype=torch.long)
    labels[:, 1:3, 1:3] = 1
    rounded = ~guided_cutout_mask(labels, (4, 4), min_region=1, generator=g(0))
    assert torch.all(rounded.flatten(1).sum(1) == 1)
    stochastic = ~guided_cutout_mask(labels, (4, 4), min_region=1, rounding="stochastic", generator=g(0))
    per_box = stochastic.flatten(1).sum(1).float()
    assert abs(per_box.mean().item() - 0.64) < 0.1
    assert set(per_box.unique().tolist()) <= {0.0, 1.0, 2.0, 4.0}
    assert not stochastic[:, 0, 0, :].any()  # still inside the box
    assert not stochastic[:, 0, 3, :].any()
    m = GuidedCutout(rounding="stochastic", min_region=1)
    assert torch.equal(
        m(torch.ones(400, 1, 4, 4), labels, generator=g(0)),
        torch.where(stochastic, 0.0, torch.ones(400, 1, 4, 4)),
    )


# ---------------------------------------------------------------- friction 9: integer class maps
@pytest.mark.parametrize("fn", [object_mask, context_mask, guided_cutout])
def test_integer_class_maps_equal_their_logits(fn) -> None:  # type: ignore[no-untyped-def]
    z, pred = _realistic()
    labels = pred.argmax(1)
    kwargs = {"generator": g(3)} if fn is guided_cutout else {}
    assert torch.equal(
        fn(z, labels, **kwargs), fn(z, pred, **(dict(kwargs, generator=g(3)) if kwargs else {}))
    )
    assert torch.equal(
        fn(z, labels.to(torch.uint8), **({"generator": g(3)} if kwargs else {})),
        fn(z, pred, **({"generator": g(3)} if kwargs else {})),
    )
