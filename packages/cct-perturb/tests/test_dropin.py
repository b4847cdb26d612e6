"""What a user dropping cct-perturb into another codebase relies on (issue 17's frictions)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import cct_perturb
from cct_perturb import (
    ALIASES,
    PAPER_DECODERS,
    PERTURBATIONS,
    ContextMask,
    GuidedCutout,
    ObjectMask,
    SpatialDropout,
    class_map,
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
    # the listed names are the registered ones (the paper's seven among them), never an alias
    assert not set(ALIASES) & set(PERTURBATIONS)
    assert set(PAPER_DECODERS) <= set(PERTURBATIONS)
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


@pytest.mark.filterwarnings("ignore:guided_cutout. a batch with objects got no cut")  # below the threshold
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


# ---------------------------------------------------------------- issue 40, item 4: G-Cutout's minimum region
@pytest.fixture
def fresh_no_cut_check():  # type: ignore[no-untyped-def]
    """The "no cut at all" check runs once per configuration and process: start each test afresh."""
    from cct_perturb import cutout

    cutout._NO_CUT_CHECKED.clear()
    yield
    cutout._NO_CUT_CHECKED.clear()


def _unimatch_case(side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 161 crop with a side x side object: c4 (stride 16, 11x11), its labels and logits at stride 4 (41x41,
    what UniMatch's ``_decode`` returns) and at the input's size (161x161)."""
    labels = torch.zeros(2, 161, 161, dtype=torch.long)
    labels[:, 32 : 32 + side, 48 : 48 + side] = 2
    labels_s4 = nearest_resize(labels, (41, 41))
    return torch.ones(2, 8, 11, 11), labels, _logits(labels_s4, 3), _logits(labels, 3)


@pytest.mark.usefixtures("fresh_no_cut_check")
def test_the_minimum_region_does_not_depend_on_the_predictions_resolution() -> None:
    """UniMatch: z = c4 at stride 16 (11x11), the guide its decoder's logits at stride 4 (41x41). With
    min_area in the prediction's pixels (0.2-0.3) the minimum was 512 * 121 / 1681 = 37 feature pixels and
    even a 64x64 object (16 feature pixels) was never cut."""
    z, _, pred_s4, pred_full = _unimatch_case(64)
    assert torch.equal(class_map(pred_s4, (11, 11)), class_map(pred_full, (11, 11)))  # same objects on z
    for kwargs in ({}, {"stride": 16}, {"stride": (16, 16)}):
        for seed in range(4):
            at_s4 = guided_cutout(z, pred_s4, generator=g(seed), **kwargs)  # type: ignore[arg-type]
            assert (at_s4 == 0).any(), (kwargs, seed)
            # the same cut whatever resolution the guide has: logits at stride 4, at the input's size, or
            # a class map at z's size
            assert torch.equal(at_s4, guided_cutout(z, pred_full, generator=g(seed), **kwargs))  # type: ignore[arg-type]
            assert torch.equal(
                at_s4,
                guided_cutout(z, class_map(pred_full, (11, 11)), generator=g(seed), **kwargs),  # type: ignore[arg-type]
            )
    # the threshold is min_area / stride**2 feature pixels: 16 feature pixels are cut below 1024 input pixels
    # at stride 8, not at 2048
    assert (guided_cutout(z, pred_s4, min_area=1024, generator=g(0)) == 0).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ten such batches would warn
        assert torch.equal(guided_cutout(z, pred_s4, min_area=2048, generator=g(0)), z)
    assert (guided_cutout(z, pred_s4, min_area=4096, stride=16, generator=g(0)) == 0).any()


@pytest.mark.usefixtures("fresh_no_cut_check")
def test_batches_with_objects_and_no_cut_warn_once() -> None:
    """Ten batches with objects and not one cut: a wrong stride (or min_area), said once, then no checks."""
    z, _, pred_s4, _ = _unimatch_case(32)  # 2x2 feature pixels at stride 16, below the default 8
    background_only = _logits(torch.zeros(2, 41, 41, dtype=torch.long), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(12):  # batches without objects say nothing and do not count
            guided_cutout(z, background_only, generator=g(seed))
        for seed in range(9):  # one batch without a cut is no evidence (an untrained decoder's speckles)
            assert torch.equal(guided_cutout(z, pred_s4, generator=g(seed)), z)
    with pytest.warns(
        RuntimeWarning,
        match=r"first 10 batches with objects got no cut .*largest object region had 4 feature pixels.*"
        r"minimum of 8 .*stride=",
    ):
        assert torch.equal(GuidedCutout()(z, pred_s4, generator=g(9)), z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: no second warning, and no more checks
        for seed in range(12):
            guided_cutout(z, pred_s4, generator=g(seed))
        assert (guided_cutout(z, pred_s4, stride=16, generator=g(0)) == 0).any()  # told the stride: cut


@pytest.mark.usefixtures("fresh_no_cut_check")
def test_a_cut_ends_the_check_and_tiny_boxes_are_named() -> None:
    z, _, pred_s4, _ = _unimatch_case(64)
    _, _, small, _ = _unimatch_case(32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (guided_cutout(z, pred_s4, generator=g(0)) == 0).any()  # a cut: this configuration is sound
        for seed in range(12):
            guided_cutout(z, small, generator=g(seed))  # later batches without a cut: not checked
    # boxes that reach the minimum but round to nothing are named as such
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2, 2:4] = 1  # a 1x2 box: round(0.4) = 0 rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(9):
            guided_cutout(torch.ones(1, 1, 8, 8), labels, min_region=1, generator=g(seed))
    with pytest.warns(RuntimeWarning, match="boxes are too small.*rounding='stochastic'"):
        guided_cutout(torch.ones(1, 1, 8, 8), labels, min_region=1, generator=g(9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(10):  # erase=0 asks for no cut
            guided_cutout(torch.ones(1, 1, 8, 8), labels, erase=0.0, min_region=1, generator=g(seed))


def test_stride_is_checked() -> None:
    z, pred = _realistic()
    for bad in (0, -8, "16", (16,), True):
        with pytest.raises(TypeError, match="`stride` must be None"):
            guided_cutout(z, pred, stride=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`stride` must be None"):
            GuidedCutout(stride=bad)  # type: ignore[arg-type]
    assert "stride=16" in repr(GuidedCutout(stride=16))


# ---------------------------------------------------------------- issue 40, item 5: the ignore label
def _with_void() -> tuple[torch.Tensor, torch.Tensor]:
    """A class map with an object (class 3) and a void region (255), both 32x32 on a 64x64 map."""
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 0:32, 0:32] = 3
    labels[:, 32:64, 32:64] = 255
    return torch.randn(2, 16, 8, 8, generator=g(0)).abs() + 1, labels


@pytest.mark.filterwarnings("ignore:guided_cutout. a batch with objects got no cut")
def test_the_ignore_label_of_a_class_map_is_never_an_object() -> None:
    z, labels = _with_void()
    void = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    void[..., 4:, 4:] = True
    obj = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    obj[..., :4, :4] = True
    # object_mask zeroes the object only; context_mask zeroes everything else, the void included
    assert torch.equal(object_mask(z, labels), torch.where(obj, 0.0, z))
    assert torch.equal(context_mask(z, labels), torch.where(obj, z, 0.0))
    assert torch.equal(ObjectMask()(z, labels), object_mask(z, labels))
    assert torch.equal(ContextMask(ignore=255)(z, labels), context_mask(z, labels))
    # G-Cutout never cuts in the void
    for seed in range(10):
        out = guided_cutout(z, labels, generator=g(seed))
        assert torch.equal(out[void.expand_as(z)], z[void.expand_as(z)])
        assert (out[:, :, :4, :4] == 0).any()
        assert torch.equal(GuidedCutout()(z, labels, generator=g(seed)), out)
    # another void label, or none (255 an ordinary class, as before 0.4)
    relabelled = torch.where(labels == 255, 250, labels)
    assert torch.equal(object_mask(z, relabelled, ignore=250), object_mask(z, labels))
    assert torch.equal(object_mask(z, labels, ignore=None), torch.where(obj | void, 0.0, z))
    assert torch.equal(object_mask(z, labels, background=(0, 255), ignore=None), object_mask(z, labels))
    assert "ignore=255" in repr(ObjectMask())


def test_the_ignore_label_does_not_apply_to_logits() -> None:
    """A prediction's argmax is always a class: class 255 of a 300-class model is an object."""
    z = torch.ones(1, 4, 8, 8)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4] = 255
    logits = _logits(labels, 300)
    assert torch.equal(object_mask(z, logits), object_mask(z, labels, ignore=None))
    assert not torch.equal(object_mask(z, logits), object_mask(z, labels))


def test_the_ignore_argument_is_checked() -> None:
    z, labels = _with_void()
    for bad in (2.5, "255", True):
        with pytest.raises(TypeError, match="`ignore` must be the void label"):
            object_mask(z, labels, ignore=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`ignore` must be the void label"):
            GuidedCutout(ignore=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- issue 40, item 5: generators and modules
def test_a_generator_passed_positionally_to_a_module_is_named() -> None:
    z, pred = _realistic()
    gen = torch.Generator()
    decoder = torch.nn.Conv2d(256, 21, 1)
    for name in PERTURBATIONS:
        module = create_perturbation(name)
        extra = {"features": (), "prediction": (pred,), "decoder": (decoder,)}[module.inputs]
        with pytest.raises(TypeError, match=rf"{type(module).__name__}: pass a generator as generator="):
            module(z, *extra, gen)
        module(z, *extra, generator=gen)  # the keyword works
    with pytest.raises(TypeError, match=r"VAT takes forward\(z, decoder, target=None"):
        create_perturbation("vat")(z, decoder, None, gen)
