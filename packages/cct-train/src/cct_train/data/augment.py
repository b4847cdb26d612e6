"""Batched, on-device augmentation for segmentation: random scale, crop (with padding) and flip.

Everything runs on whole batches on the batch's device, without per-sample Python loops; every random
draw comes from an optional ``torch.Generator``, so a seed reproduces the augmentation.

Geometry. For sample b with scale s_b, crop offset (oy_b, ox_b) in the scaled image and flip f_b, the
output pixel (i, j) of the (h, w) crop reads the input at (pixel centres)::

    j' = w - 1 - j if f_b else j
    y = (i + oy_b + 0.5) / s_b - 0.5        x = (j' + ox_b + 0.5) / s_b - 0.5

Images are sampled bilinearly, masks by nearest neighbour (an integer gather, so mask values can only
be values of the input mask). Output pixels that fall outside the input are padding: images get
``fill`` and masks get ``ignore_index``, decided by the same test, so images and masks stay aligned.

Deliberately not kornia's ``AugmentationSequential``: scale, crop and flip here are one sampling grid per
sample and one ``grid_sample`` for the whole batch, masks take an exact integer gather instead of a
nearest-mode interpolation of floats, and padding is decided once for image and mask, which a chain of
separate kornia transforms (resize, then pad, then crop) does not guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch
import torch.nn.functional as F
from torch import nn

from cct_train.common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cct_train.data.base import IGNORE_INDEX


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 images (..., 3, H, W) in 0..255 -> float32 in [0, 1]; float input is returned as float32."""
    if image.dtype == torch.uint8:
        return image.to(torch.float32).div_(255.0)
    if not image.is_floating_point():
        raise TypeError(f"expected uint8 or float images, got {image.dtype}")
    return image.to(torch.float32) if image.dtype == torch.float64 else image


class Normalize(nn.Module):
    """Channel normalisation ``(x - mean) / std`` of float images (B, C, H, W) in [0, 1].

    Defaults to the ImageNet statistics; :meth:`denormalize` inverts it (for visualisation).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std must have the same length")
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float (uint8 is converted to [0, 1] first) -> normalised (B, C, H, W)."""
        images = to_float_image(images)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`forward`: (B, C, H, W) normalised -> [0, 1] (not clamped)."""
        return images * self.std.to(images.dtype) + self.mean.to(images.dtype)


def _uniform(
    n: int,
    low: float | torch.Tensor,
    high: float | torch.Tensor,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    u = torch.rand(n, generator=generator, device=gen_device).to(device)
    return low + (high - low) * u


class SegmentationAugment(nn.Module):
    """Random scale + crop/pad + horizontal flip of a batch, images and masks together.

    Args:
        crop_size: output ``(h, w)``.
        scale_range: per-sample scale factor drawn uniformly in this range (``(1, 1)`` disables scaling).
        hflip: flip each sample with probability 0.5.
        ignore_index: mask value of padded pixels.
        fill: image value of padded pixels (a float, or one float per channel, e.g. the mean).

    ``forward(images (B, C, H, W) float in [0, 1] or uint8, masks (B, H, W) int64 or None,
    generator=None)`` returns ``(images (B, C, h, w) float, masks (B, h, w) int64 or None)``. When the
    scaled image is smaller than the crop it is placed at a random offset inside the crop and the rest is
    padding; otherwise the crop is taken at a random offset inside the scaled image.
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: bool = True,
        ignore_index: int = IGNORE_INDEX,
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__()
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"crop_size must be (h, w) with positive sizes, got {crop_size!r}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = hflip
        self.ignore_index = ignore_index
        self.fill = (float(fill),) if isinstance(fill, int | float) else tuple(float(f) for f in fill)

    def extra_repr(self) -> str:
        return (
            f"crop_size={self.crop_size}, scale_range={self.scale_range}, hflip={self.hflip}, "
            f"ignore_index={self.ignore_index}"
        )

    def sample_params(
        self,
        batch: int,
        size: tuple[int, int],
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw per-sample parameters: ``scale`` (B,), ``offset_y`` / ``offset_x`` (B,) in scaled pixels,
        ``flip`` (B,) bool. The draw order is fixed, so a seeded generator reproduces them."""
        height, width = size
        h, w = self.crop_size
        scale = _uniform(batch, self.scale_range[0], self.scale_range[1], generator, device)
        span_y = height * scale - h
        span_x = width * scale - w
        # offset uniform between 0 and the span (a negative span places the image inside the crop)
        offset_y = _uniform(batch, torch.zeros_like(span_y), span_y, generator, device)
        offset_x = _uniform(batch, torch.zeros_like(span_x), span_x, generator, device)
        flip = _uniform(batch, 0.0, 1.0, generator, device) < 0.5
        if not self.hflip:
            flip = torch.zeros_like(flip)
        return {"scale": scale, "offset_y": offset_y.round(), "offset_x": offset_x.round(), "flip": flip}

    def source_coords(self, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input pixel coordinates read by every output pixel: y (B, h, 1) and x (B, 1, w), float."""
        h, w = self.crop_size
        scale = params["scale"]
        device = scale.device
        i = torch.arange(h, device=device, dtype=torch.float32)
        j = torch.arange(w, device=device, dtype=torch.float32)
        j = torch.where(params["flip"][:, None], (w - 1) - j[None, :], j[None, :])  # (B, w)
        y = (i[None, :] + params["offset_y"][:, None] + 0.5) / scale[:, None] - 0.5  # (B, h)
        x = (j + params["offset_x"][:, None] + 0.5) / scale[:, None] - 0.5  # (B, w)
        return y[:, :, None], x[:, None, :]

    @overload
    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def forward(
        self, images: torch.Tensor, masks: None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, None]: ...

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        images = to_float_image(images)
        batch, _, height, width = images.shape
        if masks is not None and masks.shape != (batch, height, width):
            raise ValueError(f"masks must be (B, H, W) = {(batch, height, width)}, got {tuple(masks.shape)}")
        params = self.sample_params(batch, (height, width), images.device, generator)
        return self.warp(images, masks, params)

    def warp(
        self, images: torch.Tensor, masks: torch.Tensor | None, params: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Warp float images (B, C, H, W) and masks (B, H, W) with given parameters (:meth:`sample_params`)."""
        batch, channels, height, width = images.shape
        h, w = self.crop_size
        y, x = self.source_coords(params)  # (B, h, 1), (B, 1, w)

        # nearest source pixel, and whether it exists: shared by images (padding) and masks
        iy = torch.floor(y + 0.5).long()
        ix = torch.floor(x + 0.5).long()
        valid = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)  # (B, h, w)

        # images: bilinear grid_sample (align_corners=False: normalised = (2 * pixel + 1) / size - 1)
        gy = ((2 * y + 1) / height - 1).expand(batch, h, w)
        gx = ((2 * x + 1) / width - 1).expand(batch, h, w)
        grid = torch.stack((gx, gy), dim=-1).to(images.dtype)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        fill = torch.tensor(self.fill, dtype=out.dtype, device=out.device)
        fill = fill.view(1, -1, 1, 1).expand(batch, channels, h, w) if fill.numel() > 1 else fill
        out = torch.where(valid[:, None], out, fill)

        out_masks: torch.Tensor | None = None
        if masks is not None:
            flat = (iy.clamp(0, height - 1) * width + ix.clamp(0, width - 1)).reshape(batch, h * w)
            gathered = masks.reshape(batch, height * width).gather(1, flat).reshape(batch, h, w)
            out_masks = torch.where(valid, gathered, torch.full_like(gathered, self.ignore_index))
        return out, out_masks


def random_scale_crop(
    image: torch.Tensor,
    mask: torch.Tensor | None,
    crop_size: Sequence[int],
    scale_range: Sequence[float] = (0.5, 2.0),
    *,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random scale + crop of ONE sample at its own size, before it is batched with others of other sizes.

    image: (3, H, W) uint8; mask: (H, W) int64 or None. Returns image (3, h, w) uint8 and mask (h, w) int64
    (or None) for ``crop_size=(h, w)``: the same geometry and distribution as :class:`SegmentationAugment`
    without the flip (scale drawn in ``scale_range``, offset uniform; where the scaled image is smaller than
    the crop the rest is padding: 0 in the image, ``ignore_index`` in the mask). Only the source window the
    crop reads is converted to float, so a large photograph costs about as much as a small one.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if mask is not None and mask.shape != (height, width):
        raise ValueError(f"mask must be (H, W) = {(height, width)}, got {tuple(mask.shape)}")
    augment = SegmentationAugment(crop_size, scale_range, hflip=False, ignore_index=ignore_index)
    params = augment.sample_params(1, (height, width), image.device, generator)
    y, x = augment.source_coords(params)
    # The rows / columns the crop reads (bilinear: floor and floor + 1), clipped to the image.
    top = int(torch.floor(y.min()).clamp(0, height - 1))
    bottom = int((torch.floor(y.max()) + 2).clamp(1, height))
    left = int(torch.floor(x.min()).clamp(0, width - 1))
    right = int((torch.floor(x.max()) + 2).clamp(1, width))
    # Every pixel the crop reads lies in the window (nearest: floor(y + 0.5), bilinear: floor(y) and the next),
    # and one outside it is outside the image too, so the window gives the very crop the whole image gives.
    scale = params["scale"]
    # The same coordinates, counted from the window's corner: y - top = (i + oy - top * s + 0.5) / s - 0.5.
    shifted = {
        **params,
        "offset_y": params["offset_y"] - top * scale,
        "offset_x": params["offset_x"] - left * scale,
    }
    window = to_float_image(image[None, :, top:bottom, left:right])
    window_mask = mask[None, top:bottom, left:right] if mask is not None else None
    out, out_mask = augment.warp(window, window_mask, shifted)
    pixels = out[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return pixels, (out_mask[0] if out_mask is not None else None)
