"""Image-level perturbations for cross-view CCT: a strong photometric perturbation and CutMix (kornia-based).

The strong view of FixMatch / UniMatch for segmentation, batched on the images' device: per-sample colour
jitter, grayscale and Gaussian blur (:func:`photometric`; they never move a pixel, so the weak view's
prediction stays aligned with the strong view), and CutMix boxes mixed between the images of the batch
(:func:`cutmix`; the same boxes applied to the target map / probabilities and to the confidence mask).

Every random draw is made here with torch from an optional ``torch.Generator`` (kornia's augmentation modules
draw from the global RNG) and passed to kornia's functional ops. No per-sample Python loop, no host
synchronisation.

kornia is an optional extra: ``pip install 'cct-perturb[image]'``. ``import cct_perturb`` does not import this
module; importing it without kornia raises an ImportError naming that pip line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from cct_perturb._utils import _check_generator, _describe

INSTALL_HINT = "pip install 'cct-perturb[image]'"

try:
    from kornia.color import rgb_to_grayscale
    from kornia.enhance import (
        adjust_brightness_accumulative,
        adjust_contrast_with_mean_subtraction,
        adjust_saturation_with_gray_subtraction,
    )
    from kornia.filters import filter2d_separable, get_gaussian_kernel1d
except ImportError as err:  # the feature perturbations need torch only; these need the extra
    raise ImportError(
        f"cct_perturb.image (photometric, cutmix) needs kornia, an optional extra of cct-perturb: "
        f"{INSTALL_HINT} (or pip install kornia); the feature perturbations work without it ({err})"
    ) from err

__all__ = [
    "IMAGE_PERTURBATIONS",
    "INSTALL_HINT",
    "CutMix",
    "CutMixResult",
    "Photometric",
    "PhotometricParams",
    "apply_cutmix",
    "apply_photometric",
    "create_image_perturbation",
    "cutmix",
    "cutmix_masks",
    "photometric",
    "photometric_params",
    "shift_hue",
]


# ----------------------------------------------------------------------------------------------- checks
def _number(fn: str, name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = " (pass a generator as generator=)" if isinstance(value, torch.Generator) else ""
        raise TypeError(f"{fn}: `{name}` must be a number, got {_describe(value)}{hint}")
    if not low <= value <= high:
        raise ValueError(f"{fn}: `{name}` must be in [{low}, {high}], got {value}")
    return float(value)


def _pair(fn: str, name: str, value: object, low: float, high: float = math.inf) -> tuple[float, float]:
    """A (lo, hi) range with low < lo <= hi <= high (lo > low: a zero sigma, area or ratio is meaningless)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{fn}: `{name}` must be a (low, high) pair, got {_describe(value)}")
    lo = _number(fn, name, value[0], low, high)
    hi = _number(fn, name, value[1], low, high)
    if not (low < lo <= hi):
        raise ValueError(f"{fn}: `{name}` must satisfy {low} < low <= high, got {tuple(value)}")
    return lo, hi


def _check_images(fn: str, images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{fn}: `images` must be a tensor (B, 3, H, W), got {_describe(images)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{fn}: expected RGB images of shape (B, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(
            f"{fn}: `images` must be floating-point in [0, 1] (not normalised), got {_describe(images)}; "
            "convert 8-bit images with images.float() / 255"
        )
    return images


# ----------------------------------------------------------------------------------------------- photometric
class PhotometricParams(NamedTuple):
    """The per-sample draws of :func:`photometric`, each of shape ``(B,)`` on the images' device.

    ``brightness``, ``contrast``, ``saturation``: multiplicative factors (1 = unchanged); ``hue``: a shift
    in turns (fraction of the hue circle, 0 = unchanged); ``jitter`` / ``grayscale`` / ``blur``: bool, whether
    each step applies to that sample; ``sigma``: the blur's standard deviation in pixels.
    """

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    jitter: torch.Tensor
    grayscale: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


def photometric_params(
    batch_size: int,
    *,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.25,
    p_jitter: float = 0.8,
    p_grayscale: float = 0.2,
    p_blur: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> PhotometricParams:
    r"""Draw the per-sample parameters of :func:`photometric` (all from ``generator``, one ``torch.rand`` call).

    Factors as torchvision's ``ColorJitter``: brightness, contrast and saturation
    :math:`\sim U(\max(0, 1 - v), 1 + v)`, hue :math:`\sim U(-v, v)` turns; each step's Bernoulli draw with its
    probability; :math:`\sigma \sim U(\text{blur\_sigma})`.

    Args:
        batch_size: B.
        device: where the draws are made (default: the generator's device, else the CPU).

    Returns:
        :class:`PhotometricParams`, tensors of shape :math:`(B,)`.
    """
    fn = "photometric"
    b = _number(fn, "brightness", brightness, 0.0)
    c = _number(fn, "contrast", contrast, 0.0)
    s = _number(fn, "saturation", saturation, 0.0)
    h = _number(fn, "hue", hue, 0.0, 0.5)
    p_j = _number(fn, "p_jitter", p_jitter, 0.0, 1.0)
    p_g = _number(fn, "p_grayscale", p_grayscale, 0.0, 1.0)
    p_b = _number(fn, "p_blur", p_blur, 0.0, 1.0)
    s_lo, s_hi = _pair(fn, "blur_sigma", blur_sigma, 0.0)
    _check_generator(fn, generator)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    # One draw for everything, always the same columns whatever the probabilities: a seed gives the same
    # stream of draws whichever steps are switched off.
    u = torch.rand(int(batch_size), 8, device=device, generator=generator)

    def factor(col: int, v: float) -> torch.Tensor:
        lo = max(0.0, 1.0 - v)
        return lo + (1.0 + v - lo) * u[:, col]

    return PhotometricParams(
        brightness=factor(0, b),
        contrast=factor(1, c),
        saturation=factor(2, s),
        hue=(2.0 * u[:, 3] - 1.0) * h,
        jitter=u[:, 4] < p_j,
        grayscale=u[:, 5] < p_g,
        blur=u[:, 6] < p_b,
        sigma=s_lo + (s_hi - s_lo) * u[:, 7],
    )


def shift_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    r"""Rotate the HSV hue of RGB images by ``turns`` (a fraction of the colour circle) per sample.

    The same result as ``kornia.enhance.adjust_hue(images, 2 * pi * turns)`` and torchvision's
    ``adjust_hue(img, turns)`` (within float32 rounding, tested) in one pass over the pixels, without building
    the HSV image and its sextant selection: saturation and value are kept, so max and min of (R, G, B) are
    too, and each channel is ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``,
    n = 5, 3, 1 (the closed form of HSV -> RGB). Measured 3-4x faster than kornia's on the CPU at batch 4,
    144x192 (``benchmarks/bench_image.py``), where kornia's was most of :func:`photometric`'s time.

    Args:
        images: :math:`(B, 3, H, W)` float in [0, 1].
        turns: :math:`(B,)` hue shifts; 0 keeps the image (up to rounding), 0.5 gives the complementary hue.

    Returns:
        :math:`(B, 3, H, W)`, same dtype.
    """
    red, green, blue = images.unbind(1)
    # Element-wise max / min over three planes: a reduction over the channel dimension (with its argmax) is
    # several times slower on the CPU.
    maxc = torch.maximum(torch.maximum(red, green), blue)
    chroma = maxc - torch.minimum(torch.minimum(red, green), blue)
    inv = torch.where(
        chroma > 0, chroma, torch.ones_like(chroma)
    ).reciprocal()  # grey pixels: hue 0, kept grey
    hue = torch.where(
        red == maxc,
        (green - blue) * inv,
        torch.where(green == maxc, (blue - red) * inv + 2.0, (red - green) * inv + 4.0),
    )  # in sextants, ties resolved red first as an argmax would
    hue = torch.remainder(hue + 6.0 * turns.to(images.dtype).view(-1, 1, 1), 6.0)  # [0, 6]
    n = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    k = hue[:, None] + n  # [1, 11]: one subtraction instead of a second remainder
    k = torch.where(k >= 6.0, k - 6.0, k)
    return maxc[:, None] - chroma[:, None] * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


_STEPS = ("brightness", "contrast", "saturation", "hue", "grayscale", "blur")


def _blur_kernel_size(max_sigma: float, height: int, width: int) -> int:
    # 3 sigma each side (PIL's and OpenCV's usual extent), odd; reflect padding needs pad < the image's side.
    k = 2 * math.ceil(3.0 * max_sigma) + 1
    largest = 2 * min(height, width) - 1
    return max(1, min(k, largest))


def _per_sample(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def apply_photometric(
    images: torch.Tensor,
    params: PhotometricParams,
    *,
    blur_kernel_size: int | None = None,
    max_sigma: float | None = None,
    skip: Sequence[str] = (),
) -> torch.Tensor:
    r"""Apply drawn photometric parameters: colour jitter, then grayscale, then Gaussian blur.

    The jitter's four steps run in a fixed order (brightness, contrast, saturation, hue; torchvision draws a
    random order per image, which would need a host-side branch per step). Each is kornia's torchvision-
    compatible op: brightness multiplies, contrast blends with the image's grayscale mean, saturation with
    its grayscale; hue rotates in HSV (:func:`shift_hue`, equal to kornia's ``adjust_hue`` and faster).
    The arithmetic is float32 with autocast off; the result is cast back.

    Args:
        images: :math:`(B, 3, H, W)` float in [0, 1] (not normalised).
        params: from :func:`photometric_params`, on ``images.device``.
        blur_kernel_size: odd kernel side; default ``2 * ceil(3 * max_sigma) + 1`` (13 for sigma 2), capped
            by the image size.
        max_sigma: the largest sigma ``params`` may hold (sizes the default kernel; :func:`photometric`
            passes ``blur_sigma[1]``); default 2.0.
        skip: steps left out for every sample (a static choice, no host read): any of ``"brightness"``,
            ``"contrast"``, ``"saturation"``, ``"hue"``, ``"grayscale"``, ``"blur"``. :func:`photometric`
            skips those whose strength or probability is 0.

    Returns:
        :math:`(B, 3, H, W)`, same dtype and device, in [0, 1].
    """
    images = _check_images("apply_photometric", images)
    n = images.shape[0]
    for name, value in params._asdict().items():
        if value.shape != (n,):
            raise ValueError(
                f"apply_photometric: params.{name} must have shape ({n},), got {tuple(value.shape)}"
            )
    unknown = set(skip) - set(_STEPS)
    if unknown:
        raise ValueError(f"apply_photometric: unknown steps in `skip` {sorted(unknown)}; the steps: {_STEPS}")
    # Every step runs on the whole batch and a per-sample bool selects its result (torch.where): no
    # per-sample branch, no host read of the draws.
    with torch.autocast(device_type=images.device.type, enabled=False):
        x = images.float()
        jitter = [
            ("brightness", adjust_brightness_accumulative, params.brightness),
            ("contrast", adjust_contrast_with_mean_subtraction, params.contrast),
            ("saturation", adjust_saturation_with_gray_subtraction, params.saturation),
            ("hue", shift_hue, params.hue),
        ]
        y = x
        for name, op, factor in jitter:
            if name not in skip:
                y = op(y, factor)
        if y is not x:
            x = torch.where(_per_sample(params.jitter), y, x)
        if "grayscale" not in skip:
            gray = rgb_to_grayscale(x).expand_as(x)
            x = torch.where(_per_sample(params.grayscale), gray, x)
        if "blur" not in skip:
            x = _blur(x, params.sigma, params.blur, blur_kernel_size, max_sigma)
        x = x.clamp(0.0, 1.0)
    return x.to(images.dtype)


def _blur(
    x: torch.Tensor,
    sigma: torch.Tensor,
    apply: torch.Tensor,
    kernel_size: int | None,
    max_sigma: float | None,
) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma, kept where ``apply``; separable, reflect border."""
    height, width = x.shape[-2:]
    if kernel_size is None:
        kernel_size = _blur_kernel_size(2.0 if max_sigma is None else max_sigma, height, width)
    elif (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"blur_kernel_size must be a positive odd integer, got {kernel_size!r}")
    else:
        kernel_size = min(kernel_size, 2 * min(height, width) - 1)  # reflect padding needs pad < the side
    if kernel_size == 1:
        return x
    # kornia's kernels and separable filter directly: its gaussian_blur2d entry point reads sigma on the host to
    # check it (a sync on CUDA) and measured slower on the CPU here (2.0 against 1.4 ms at 4 x 3 x 144 x 192).
    sigma = sigma.float().clamp_min(1e-3)  # positive whatever the caller drew, without reading it
    kernel = get_gaussian_kernel1d(kernel_size, sigma[:, None])
    blurred = filter2d_separable(x, kernel, kernel, border_type="reflect")
    return torch.where(_per_sample(apply), blurred, x)


def photometric(
    images: torch.Tensor,
    *,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.25,
    p_jitter: float = 0.8,
    p_grayscale: float = 0.2,
    p_blur: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_kernel_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Strong photometric perturbation, per sample: colour jitter, random grayscale, random Gaussian blur.

    The defaults are FixMatch / UniMatch's for segmentation: ``ColorJitter(0.5, 0.5, 0.5, 0.25)`` with
    probability 0.8, grayscale with 0.2, blur with sigma ~ U(0.1, 2.0) with 0.5. It never moves a pixel: every
    output pixel depends on its own sample only and the geometry is kept (blur is the only step that mixes
    neighbours, symmetrically), so a target predicted on the unperturbed images stays aligned.

    Args:
        images: :math:`(B, 3, H, W)` float in [0, 1] (NOT normalised: normalise afterwards).
        brightness, contrast, saturation: jitter strengths v, factors ~ U(max(0, 1 - v), 1 + v); 0 = off.
        hue: hue jitter strength in turns, shift ~ U(-hue, hue), at most 0.5; 0 = off.
        p_jitter, p_grayscale, p_blur: per-sample probabilities of each step.
        blur_sigma: (low, high) of the blur's sigma in pixels.
        blur_kernel_size: odd kernel side; default ``2 * ceil(3 * blur_sigma[1]) + 1``.
        generator: optional generator on ``images.device`` for every draw.

    Returns:
        :math:`(B, 3, H, W)`, same dtype and device as ``images``, in [0, 1]; ``images`` is not modified.

    >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> out = photometric(x, generator=torch.Generator().manual_seed(1))
    >>> out.shape, out.dtype, bool(((out >= 0) & (out <= 1)).all())
    (torch.Size([2, 3, 8, 8]), torch.float32, True)
    """
    images = _check_images("photometric", images)
    params = photometric_params(
        images.shape[0],
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        p_jitter=p_jitter,
        p_grayscale=p_grayscale,
        p_blur=p_blur,
        blur_sigma=blur_sigma,
        device=images.device,
        generator=generator,
    )
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    skip = [name for name, v in strengths.items() if v == 0 or p_jitter == 0]
    skip += ["grayscale"] if p_grayscale == 0 else []
    skip += ["blur"] if p_blur == 0 else []
    return apply_photometric(
        images, params, blur_kernel_size=blur_kernel_size, max_sigma=float(blur_sigma[1]), skip=skip
    )


class Photometric(nn.Module):
    r"""Module form of :func:`photometric`. Input :math:`(B, 3, H, W)` in [0, 1], output the same shape.

    Perturbs in train and eval mode alike (apply it to the strong view only).
    """

    def __init__(
        self,
        brightness: float = 0.5,
        contrast: float = 0.5,
        saturation: float = 0.5,
        hue: float = 0.25,
        p_jitter: float = 0.8,
        p_grayscale: float = 0.2,
        p_blur: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel_size: int | None = None,
    ) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
            "p_jitter": p_jitter,
            "p_grayscale": p_grayscale,
            "p_blur": p_blur,
            "blur_sigma": tuple(blur_sigma),
            "blur_kernel_size": blur_kernel_size,
        }
        photometric_params(0, **{k: v for k, v in self.kwargs.items() if k != "blur_kernel_size"})  # checks

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return photometric(images, **self.kwargs, generator=generator)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())


# ----------------------------------------------------------------------------------------------- CutMix
class CutMixResult(NamedTuple):
    """What :func:`cutmix` returns: the mixed ``images``, the mixed ``others`` (same order), and the draws."""

    images: torch.Tensor
    others: tuple[torch.Tensor, ...]
    box: torch.Tensor
    partner: torch.Tensor


def cutmix_masks(
    batch_size: int,
    size: tuple[int, int],
    *,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw CutMix boxes and partners for a batch (UniMatch's defaults), on the device, from ``generator``.

    Per sample: with probability ``p`` a box whose area is a fraction ~ U(``scale``) of the image and whose
    aspect ratio h / w ~ log-uniform(``ratio``); sides rounded to pixels and clipped to the image (a side that
    would exceed it is cut, so the area is then smaller); position uniform over the places where the box lies
    inside the image. The pixels in the box come from the ``partner`` image, a uniformly drawn other sample
    of the batch (never itself when B > 1; with B = 1 nothing can be mixed and every box is empty).

    Args:
        batch_size: B.
        size: ``(H, W)``.
        device: where to draw (default: the generator's device, else the CPU).

    Returns:
        ``box`` :math:`(B, H, W)` bool, True inside the box (all False for samples that draw no CutMix), and
        ``partner`` :math:`(B,)` long.

    >>> box, partner = cutmix_masks(4, (32, 48), p=1.0, generator=torch.Generator().manual_seed(0))
    >>> box.shape, partner.shape, bool((partner != torch.arange(4)).all())
    (torch.Size([4, 32, 48]), torch.Size([4]), True)
    """
    fn = "cutmix_masks"
    p = _number(fn, "p", p, 0.0, 1.0)
    s_lo, s_hi = _pair(fn, "scale", scale, 0.0, 1.0)
    r_lo, r_hi = _pair(fn, "ratio", ratio, 0.0)
    _check_generator(fn, generator)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise TypeError(f"{fn}: `batch_size` must be a non-negative int, got {_describe(batch_size)}")
    if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
        raise ValueError(f"{fn}: `size` must be (H, W) with positive sides, got {size}")
    height, width = int(size[0]), int(size[1])
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, 6, device=device, generator=generator)  # one draw, fixed columns
    area = (s_lo + (s_hi - s_lo) * u[:, 1]) * float(height * width)
    log_r = math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[:, 2]
    aspect = torch.exp(log_r)
    box_h = torch.sqrt(area * aspect).round().clamp(1, height)
    box_w = torch.sqrt(area / aspect).round().clamp(1, width)
    top = torch.floor(u[:, 3] * (height - box_h + 1)).clamp(max=height - box_h)
    left = torch.floor(u[:, 4] * (width - box_w + 1)).clamp(max=width - box_w)
    rows = torch.arange(height, device=device, dtype=torch.float32)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # (B, W)
    apply = (u[:, 0] < p) & (batch_size > 1)
    box = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    index = torch.arange(batch_size, device=device)
    if batch_size > 1:
        # An offset in 1..B-1 (uniform) never lands on the sample itself.
        offset = 1 + torch.floor(u[:, 5] * (batch_size - 1)).long().clamp(max=batch_size - 2)
        partner = (index + offset) % batch_size
    else:
        partner = index
    return box, partner


def apply_cutmix(x: torch.Tensor, box: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    r"""Paste each sample's box from its partner: ``x[b]`` replaced by ``x[partner[b]]`` where ``box[b]``.

    Args:
        x: :math:`(B, ..., H, W)` of any dtype: images :math:`(B, 3, H, W)`, probabilities :math:`(B, C, H, W)`,
            masks or label maps :math:`(B, H, W)` (bool, long, float).
        box: :math:`(B, H, W)` bool, from :func:`cutmix_masks`.
        partner: :math:`(B,)` long.

    Returns:
        the mixed tensor, same shape, dtype and device as ``x`` (``x`` is not modified; gradients flow to ``x``).
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError(f"apply_cutmix: `x` must be a tensor (B, ..., H, W), got {_describe(x)}")
    if box.dtype != torch.bool or box.ndim != 3:
        raise ValueError(f"apply_cutmix: `box` must be a bool tensor (B, H, W), got {_describe(box)}")
    if x.shape[0] != box.shape[0] or x.shape[-2:] != box.shape[-2:]:
        raise ValueError(
            f"apply_cutmix: `x` {tuple(x.shape)} must be (B, ..., H, W) with B, H, W of `box` {tuple(box.shape)}"
        )
    if partner.shape != (box.shape[0],):
        raise ValueError(
            f"apply_cutmix: `partner` must have shape ({box.shape[0]},), got {tuple(partner.shape)}"
        )
    mask = box.view(box.shape[0], *([1] * (x.ndim - 3)), *box.shape[-2:]).to(x.device)
    return torch.where(mask, x.index_select(0, partner.to(x.device)), x)


def cutmix(
    images: torch.Tensor,
    *others: torch.Tensor,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    generator: torch.Generator | None = None,
) -> CutMixResult:
    r"""CutMix for segmentation: one draw of boxes, applied to the images and to every other tensor alike.

    Args:
        images: :math:`(B, C, H, W)`.
        others: tensors :math:`(B, ..., H, W)` to mix with the same boxes: target maps, probabilities,
            confidence masks (any dtype).
        p, scale, ratio: as :func:`cutmix_masks`.
        generator: optional generator on ``images.device``.

    Returns:
        :class:`CutMixResult` ``(images, others, box, partner)``.

    >>> x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4, 16, 16))
    >>> mixed = cutmix(x, y, p=1.0, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(mixed.others[0], torch.where(mixed.box, y[mixed.partner], y))
    True
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"cutmix: `images` must be a tensor (B, C, H, W), got {_describe(images)}")
    n, size = images.shape[0], images.shape[-2:]
    for i, other in enumerate(others):
        if (
            not isinstance(other, torch.Tensor)
            or other.ndim < 3
            or other.shape[0] != n
            or other.shape[-2:] != size
        ):
            raise ValueError(
                f"cutmix: others[{i}] must be a tensor (B, ..., H, W) with the images' B, H, W {(n, *size)}, "
                f"got {_describe(other)}"
            )
    box, partner = cutmix_masks(
        n, (size[0], size[1]), p=p, scale=scale, ratio=ratio, device=images.device, generator=generator
    )
    return CutMixResult(
        images=apply_cutmix(images, box, partner),
        others=tuple(apply_cutmix(o, box, partner) for o in others),
        box=box,
        partner=partner,
    )


class CutMix(nn.Module):
    r"""Module form of :func:`cutmix`: ``forward(images, *others, generator=None) -> CutMixResult``."""

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.4),
        ratio: tuple[float, float] = (0.3, 1 / 0.3),
    ) -> None:
        super().__init__()
        self.p = _number("CutMix", "p", p, 0.0, 1.0)
        self.scale = _pair("CutMix", "scale", scale, 0.0, 1.0)
        self.ratio = _pair("CutMix", "ratio", ratio, 0.0)

    def forward(
        self, images: torch.Tensor, *others: torch.Tensor, generator: torch.Generator | None = None
    ) -> CutMixResult:
        return cutmix(images, *others, p=self.p, scale=self.scale, ratio=self.ratio, generator=generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio=({self.ratio[0]:.4g}, {self.ratio[1]:.4g})"


# ----------------------------------------------------------------------------------------------- registry
IMAGE_PERTURBATIONS: dict[str, type[nn.Module]] = {"photometric": Photometric, "cutmix": CutMix}


def create_image_perturbation(name: str, **kwargs: Any) -> nn.Module:
    """Build the image perturbation module registered as ``name`` with the arguments ``kwargs``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    >>> create_image_perturbation("cutmix", p=1.0).p
    1.0
    """
    try:
        cls = IMAGE_PERTURBATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown image perturbation {name!r}; known: {', '.join(sorted(IMAGE_PERTURBATIONS))}"
        ) from None
    return cls(**kwargs)
