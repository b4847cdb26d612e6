"""Image-level perturbations (cct_perturb.image): photometric never moves a pixel, CutMix mixes alike, seeds."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("kornia", reason="cct_perturb.image needs the [image] extra (kornia)")

import kornia

import cct_perturb
from cct_perturb.image import (
    IMAGE_PERTURBATIONS,
    CutMix,
    CutMixResult,
    Photometric,
    apply_cutmix,
    apply_photometric,
    create_image_perturbation,
    cutmix,
    cutmix_masks,
    photometric,
    photometric_params,
    shift_hue,
)

SRC = Path(__file__).resolve().parents[1] / "src"
ALL_ON = {"p_jitter": 1.0, "p_grayscale": 0.0, "p_blur": 1.0}


def _images(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, b: int = 4
) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # Smooth colourful images with some texture: every op changes them visibly.
    coarse = torch.rand(b, 3, 4, 5, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(24, 32), mode="bilinear", align_corners=False)
    x = (0.8 * x + 0.2 * torch.rand(b, 3, 24, 32, generator=g)).clamp(0, 1)
    return x.to(device=device, dtype=dtype)


def _gen(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ---------------------------------------------------------------------------------------------- photometric
def test_photometric_shape_dtype_device_range_no_mutation(device: torch.device, dtype: torch.dtype) -> None:
    x = _images(device, dtype)
    x0 = x.clone()
    out = photometric(x, p_jitter=1.0, p_grayscale=0.5, p_blur=1.0, generator=_gen(0, device))
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert out.device == x.device
    assert torch.equal(x, x0)
    assert bool(((out >= 0) & (out <= 1)).all())
    assert not torch.equal(out, x)


def test_photometric_seeded_reproducible_and_leaves_global_rng_alone() -> None:
    x = _images()
    state = torch.get_rng_state()
    a = photometric(x, generator=_gen(3))
    b = photometric(x, generator=_gen(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, photometric(x, generator=_gen(4)))
    module = Photometric()
    assert torch.equal(module(x, generator=_gen(3)), a)


def test_photometric_never_mixes_samples() -> None:
    """Each output sample depends on its own input sample only (the draws do not depend on the pixels)."""
    x = _images(b=3)
    y = x.clone()
    y[1] = torch.rand(3, 24, 32, generator=_gen(9))
    out_x = photometric(x, **ALL_ON, generator=_gen(5))
    out_y = photometric(y, **ALL_ON, generator=_gen(5))
    assert torch.equal(out_x[0], out_y[0])
    assert torch.equal(out_x[2], out_y[2])
    assert not torch.equal(out_x[1], out_y[1])


def test_photometric_without_blur_is_pointwise_up_to_per_image_statistics() -> None:
    """Without blur no pixel moves: permuting the pixels (the same way in every image) commutes with it."""
    x = _images()
    h, w = x.shape[-2:]
    perm = torch.randperm(h * w, generator=_gen(1))

    def shuffle(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(-2)[..., perm].unflatten(-1, (h, w))

    kwargs = {"p_jitter": 1.0, "p_grayscale": 0.5, "p_blur": 0.0}
    out = photometric(x, **kwargs, generator=_gen(2))
    out_shuffled = photometric(shuffle(x), **kwargs, generator=_gen(2))
    # Contrast blends with the image's mean: summed in another order, hence a float32 tolerance.
    torch.testing.assert_close(out_shuffled, shuffle(out), atol=2e-6, rtol=0)


@pytest.mark.parametrize("dims", [(-1,), (-2,), (-2, -1)])
def test_photometric_with_blur_commutes_with_flips(dims: tuple[int, ...]) -> None:
    """The blur mixes neighbours symmetrically (reflect border): flips commute, the geometry is kept."""
    x = _images()
    out = photometric(x, p_jitter=1.0, p_grayscale=0.5, p_blur=1.0, generator=_gen(2))
    out_flipped = photometric(x.flip(dims), p_jitter=1.0, p_grayscale=0.5, p_blur=1.0, generator=_gen(2))
    torch.testing.assert_close(out_flipped, out.flip(dims), atol=1e-5, rtol=0)


def test_photometric_keeps_a_constant_image_constant() -> None:
    x = torch.rand(6, 3, 1, 1, generator=_gen(0)).expand(6, 3, 16, 20).contiguous()
    out = photometric(x, p_jitter=1.0, p_grayscale=0.5, p_blur=1.0, generator=_gen(1))
    spread = out.amax(dim=(-2, -1)) - out.amin(dim=(-2, -1))
    assert float(spread.max()) < 1e-5


def test_photometric_all_probabilities_zero_is_the_identity() -> None:
    x = _images()
    assert torch.equal(photometric(x, p_jitter=0.0, p_grayscale=0.0, p_blur=0.0, generator=_gen(0)), x)
    # Strengths 0 with p_jitter 1: no jitter step runs either.
    out = photometric(x, brightness=0, contrast=0, saturation=0, hue=0, p_jitter=1, p_grayscale=0, p_blur=0)
    assert torch.equal(out, x)


def test_photometric_params_follow_the_probabilities_and_ranges() -> None:
    n = 20000
    params = photometric_params(n, generator=_gen(0))
    assert abs(params.jitter.float().mean().item() - 0.8) < 0.02
    assert abs(params.grayscale.float().mean().item() - 0.2) < 0.02
    assert abs(params.blur.float().mean().item() - 0.5) < 0.02
    for name in ("brightness", "contrast", "saturation"):
        f = getattr(params, name)
        assert 0.5 <= f.min().item() < 0.52
        assert 1.48 < f.max().item() <= 1.5
    assert -0.25 <= params.hue.min().item() < -0.24
    assert 0.24 < params.hue.max().item() <= 0.25
    assert 0.1 <= params.sigma.min().item() < 0.11
    assert 1.99 < params.sigma.max().item() <= 2.0
    # The draws of one seed do not depend on which steps are switched off (fixed columns).
    other = photometric_params(n, p_jitter=0.0, p_blur=0.0, generator=_gen(0))
    assert torch.equal(other.brightness, params.brightness)
    assert torch.equal(other.sigma, params.sigma)


def test_photometric_grayscale_where_drawn() -> None:
    x = _images(b=32)
    params = photometric_params(32, p_grayscale=0.5, generator=_gen(0))
    out = apply_photometric(x, params, skip=("blur",))
    equal_channels = (out[:, :1] == out).flatten(1).all(1)
    assert torch.equal(equal_channels, params.grayscale)
    assert 0 < int(params.grayscale.sum()) < 32


def test_colour_jitter_matches_torchvision_per_sample() -> None:
    """The batched jitter equals torchvision's ColorJitter ops applied image by image with the same factors."""
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = _images(b=6)
    params = photometric_params(6, p_jitter=1.0, generator=_gen(7))
    out = apply_photometric(x, params, skip=("grayscale", "blur"))
    for i in range(6):
        ref = tvf.adjust_brightness(x[i], params.brightness[i].item())
        ref = tvf.adjust_contrast(ref, params.contrast[i].item())
        ref = tvf.adjust_saturation(ref, params.saturation[i].item())
        ref = tvf.adjust_hue(ref, params.hue[i].item())
        torch.testing.assert_close(out[i], ref, atol=2e-4, rtol=0)  # two HSV codes: float32 rounding


@pytest.mark.parametrize("turns", [0.0, 0.1, -0.25, 0.5, -0.5])
def test_shift_hue_equals_kornia_adjust_hue(turns: float) -> None:
    x = torch.rand(3, 3, 16, 16, generator=_gen(0))
    x[0, :, :4] = x[0, :1, :4]  # grey pixels
    x[1, :, :2] = 0.0  # black
    x[1, 1, 2:4] = x[1, 0, 2:4]  # ties between the largest channels
    t = torch.full((3,), turns)
    ref = kornia.enhance.adjust_hue(x, t * 2 * math.pi)
    torch.testing.assert_close(shift_hue(x, t), ref, atol=1e-5, rtol=0)


def test_blur_matches_kornia_gaussian_blur2d_per_sample() -> None:
    x = _images()
    params = photometric_params(4, p_blur=1.0, generator=_gen(1))
    out = apply_photometric(x, params, skip=("brightness", "contrast", "saturation", "hue", "grayscale"))
    k = 13  # 2 * ceil(3 * 2.0) + 1
    for i in range(4):
        s = params.sigma[i].item()
        ref = kornia.filters.gaussian_blur2d(x[i : i + 1], (k, k), (s, s), border_type="reflect")
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-6, rtol=0)


def test_photometric_under_bf16_autocast_matches_float32() -> None:
    x = _images()
    ref = photometric(x, **ALL_ON, generator=_gen(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = photometric(x, **ALL_ON, generator=_gen(0))
        mixed = cutmix(out, torch.zeros(4, 24, 32), p=1.0, generator=_gen(0))
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)
    assert mixed.images.dtype == torch.float32


def test_photometric_bf16_input_close_to_float32() -> None:
    x = _images()
    ref = photometric(x, **ALL_ON, generator=_gen(0))
    out = photometric(x.bfloat16(), **ALL_ON, generator=_gen(0))
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() < 0.02


def test_photometric_small_images_cap_the_blur_kernel() -> None:
    x = torch.rand(2, 3, 3, 5, generator=_gen(0))
    out = photometric(x, p_blur=1.0, generator=_gen(0))  # kernel 13 > the image: capped to 5 (reflect pad 2)
    assert out.shape == x.shape
    assert torch.equal(photometric(x, p_blur=1.0, blur_kernel_size=31, generator=_gen(0)), out)
    with pytest.raises(ValueError, match="odd"):
        photometric(x, blur_kernel_size=4)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"brightness": -0.1}, ValueError),
        ({"hue": 0.6}, ValueError),
        ({"p_blur": 1.5}, ValueError),
        ({"blur_sigma": (0.0, 1.0)}, ValueError),
        ({"blur_sigma": (2.0, 1.0)}, ValueError),
        ({"blur_sigma": 1.0}, TypeError),
        ({"generator": 3}, TypeError),
    ],
)
def test_photometric_bad_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        photometric(_images(), **kwargs)  # type: ignore[arg-type]


def test_photometric_bad_images() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        photometric(torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="255"):
        photometric(torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8))
    with pytest.raises(TypeError, match="generator="):
        photometric_params(2, brightness=torch.Generator())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- CutMix
def test_cutmix_masks_boxes_partners_and_areas() -> None:
    n, h, w = 4000, 60, 80
    box, partner = cutmix_masks(n, (h, w), p=0.5, generator=_gen(0))
    assert box.shape == (n, h, w)
    assert box.dtype == torch.bool
    assert partner.dtype == torch.long
    assert bool((partner != torch.arange(n)).all())
    assert int(partner.min()) >= 0
    assert int(partner.max()) < n
    area = box.flatten(1).sum(1)
    has_box = area > 0
    assert abs(has_box.float().mean().item() - 0.5) < 0.03
    # Each box is one axis-aligned rectangle inside the image.
    rows = box.any(2).sum(1)
    cols = box.any(1).sum(1)
    assert torch.equal(rows * cols, area)
    frac = area[has_box].float() / (h * w)
    assert frac.max().item() <= 0.4 + 0.02  # rounding of the sides
    assert frac.min().item() >= 0.02 - 0.01
    assert 0.15 < frac.mean().item() < 0.22  # U(0.02, 0.4) has mean 0.21; clipping makes some smaller
    ratio = (rows[has_box].float() / cols[has_box].float()).log()
    assert ratio.min().item() >= math.log(0.3) - 0.2
    assert ratio.max().item() <= math.log(1 / 0.3) + 0.2
    assert abs(ratio.mean().item()) < 0.05  # log-uniform on a symmetric range


def test_cutmix_masks_p_zero_single_sample_and_reproducible() -> None:
    box, partner = cutmix_masks(5, (8, 8), p=0.0, generator=_gen(0))
    assert not box.any()
    assert bool((partner != torch.arange(5)).all())
    box1, partner1 = cutmix_masks(1, (8, 8), p=1.0)
    assert not box1.any()  # nothing to mix with
    assert partner1.tolist() == [0]
    a = cutmix_masks(6, (16, 16), p=1.0, generator=_gen(1))
    b = cutmix_masks(6, (16, 16), p=1.0, generator=_gen(1))
    c = cutmix_masks(6, (16, 16), p=1.0, generator=_gen(2))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    box2, _ = cutmix_masks(2, (8, 8), p=1.0, generator=_gen(0))
    assert box2.flatten(1).any(1).all()
    assert cutmix_masks(0, (8, 8))[0].shape == (0, 8, 8)


def _loop_cutmix(x: torch.Tensor, box: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    for b in range(x.shape[0]):
        out[b][..., box[b]] = x[int(partner[b])][..., box[b]]
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.rand(4, 3, 12, 16),
        lambda: torch.rand(4, 7, 12, 16).softmax(1),
        lambda: torch.randint(0, 255, (4, 12, 16)),
        lambda: torch.rand(4, 12, 16) > 0.5,
        lambda: torch.rand(4, 2, 3, 12, 16).bfloat16(),
    ],
    ids=["images", "probabilities", "labels", "confidence_mask", "5d_bf16"],
)
def test_apply_cutmix_equals_a_per_sample_loop(make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    x = make()
    box, partner = cutmix_masks(4, (12, 16), p=1.0, generator=_gen(3))
    out = apply_cutmix(x, box, partner)
    assert out.dtype == x.dtype
    assert torch.equal(out, _loop_cutmix(x, box, partner))
    assert not torch.equal(out, x)


def test_cutmix_mixes_images_and_targets_identically(device: torch.device, dtype: torch.dtype) -> None:
    x = _images(device, dtype, b=5)
    labels = torch.arange(5, device=device).view(5, 1, 1).expand(5, 24, 32).contiguous()  # sample id
    probs = x.float().softmax(1)
    confidence = x[:, 0] > 0.5
    result = cutmix(x, labels, probs, confidence, x.clone(), p=1.0, generator=_gen(0, device))
    assert isinstance(result, CutMixResult)
    assert result.images.dtype == dtype
    assert result.images.device == x.device
    mixed_labels, mixed_probs, mixed_conf, mixed_copy = result.others
    assert torch.equal(mixed_copy, result.images)
    # Every pixel's label tells which image it came from: the partner inside the box, itself outside.
    expected = torch.where(result.box, result.partner.view(5, 1, 1), labels)
    assert torch.equal(mixed_labels, expected)
    source = mixed_labels  # (B, H, W) image index of each pixel
    gathered = x.permute(1, 0, 2, 3).gather(1, source[None].expand(3, -1, -1, -1)).permute(1, 0, 2, 3)
    assert torch.equal(result.images, gathered)
    assert torch.equal(mixed_probs, apply_cutmix(probs, result.box, result.partner))
    assert torch.equal(mixed_conf, apply_cutmix(confidence, result.box, result.partner))


def test_cutmix_keeps_gradients_and_module_matches_function() -> None:
    x = _images().requires_grad_(True)
    result = CutMix(p=1.0)(x, generator=_gen(0))
    result.images.sum().backward()
    assert x.grad is not None
    # Each input pixel is used once where it stays, plus once per box it is pasted into.
    assert float(x.grad.sum()) == pytest.approx(x.numel())
    ref = cutmix(x.detach(), p=1.0, generator=_gen(0))
    assert torch.equal(result.box, ref.box)
    assert result.others == ()


def test_cutmix_rejects_mismatched_others() -> None:
    with pytest.raises(ValueError, match=r"others\[0\]"):
        cutmix(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 9))
    with pytest.raises(ValueError, match="box"):
        apply_cutmix(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="scale"):
        cutmix_masks(2, (8, 8), scale=(0.0, 0.5))


# ---------------------------------------------------------------------------------------------- registry
def test_registry_and_builder() -> None:
    assert set(IMAGE_PERTURBATIONS) == {"photometric", "cutmix"}
    assert isinstance(create_image_perturbation("photometric", p_blur=0.0), Photometric)
    assert create_image_perturbation("cutmix", p=1.0).p == 1.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="photometric"):
        create_image_perturbation("colour")
    with pytest.raises(ValueError):
        Photometric(hue=0.7)
    assert "p_blur=0.5" in repr(Photometric())


def test_top_level_lazy_names() -> None:
    assert cct_perturb.photometric is photometric
    assert cct_perturb.CutMix is CutMix
    assert "cutmix" in dir(cct_perturb)
    with pytest.raises(AttributeError):
        _ = cct_perturb.no_such_name  # type: ignore[attr-defined]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_import_cct_perturb_does_not_import_kornia() -> None:
    proc = _run(
        "import sys, cct_perturb\n"
        "from cct_perturb import *\n"
        "assert 'kornia' not in sys.modules, 'kornia imported'\n"
        "assert 'cct_perturb.image' not in sys.modules\n"
        "print('OK')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_without_kornia_image_names_raise_the_pip_line_and_features_still_work() -> None:
    proc = _run(
        "import sys\n"
        "sys.modules['kornia'] = None  # as if kornia were not installed\n"
        "import torch, cct_perturb\n"
        "z = torch.rand(2, 4, 5, 5)\n"
        "assert cct_perturb.feature_noise(z).shape == z.shape\n"
        "for attempt in ('from cct_perturb.image import photometric', 'cct_perturb.cutmix'):\n"
        "    try:\n"
        "        exec(attempt)\n"
        "    except ImportError as err:\n"
        "        assert \"pip install 'cct-perturb[image]'\" in str(err), str(err)\n"
        "    else:\n"
        "        raise AssertionError(attempt + ' did not raise')\n"
        "print('OK')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
