"""Multi-scale, flip-augmented class activation maps, normalised to [0, 1] per class and image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

__all__ = ["CAMModel", "compute_cams", "normalize_cams"]


class CAMModel(Protocol):
    """What :func:`compute_cams` needs: :class:`cct_weak.CAMClassifier` or any module with ``cams(x)``."""

    training: bool

    def cams(self, x: torch.Tensor) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> object: ...


def normalize_cams(cams: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """ReLU, divide each map by its maximum (maps that are all zero stay zero), zero the absent classes.

    Args:
        cams: raw maps :math:`(B, C, H, W)`.
        labels: optional multi-hot image labels :math:`(B, C)`; classes with ``labels <= 0`` are zeroed.

    Returns:
        float32 maps :math:`(B, C, H, W)` in [0, 1]; each present, non-zero map reaches 1.
    """
    if cams.ndim != 4:
        raise ValueError(f"cams must be (B, C, H, W), got {tuple(cams.shape)}")
    cams = F.relu(cams.float())
    peak = cams.amax(dim=(2, 3), keepdim=True)
    cams = cams / torch.where(peak > 0, peak, torch.ones_like(peak))
    if labels is not None:
        if labels.shape != cams.shape[:2]:
            raise ValueError(f"labels must be (B, C) = {tuple(cams.shape[:2])}, got {tuple(labels.shape)}")
        cams = cams * (labels.to(cams.device) > 0)[:, :, None, None].to(cams.dtype)
    return cams.clamp_(0.0, 1.0)


def compute_cams(
    model: CAMModel,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
    flip: bool = True,
    output_size: tuple[int, int] | None = None,
    stride: int | None = None,
) -> torch.Tensor:
    """Multi-scale CAMs of a batch, on the images' device, as in the paper (section 3.3).

    For each scale (one loop iteration per scale, the whole batch at once; the horizontal flip is in the
    same forward pass), the images are resized bilinearly, their CAMs computed (flipped CAMs flipped back),
    resized bilinearly to ``output_size`` and summed. The sum is then normalised by
    :func:`normalize_cams`. Runs under ``torch.no_grad`` in eval mode; the model's mode is restored.

    With ``stride`` (the network's output stride), CAM cell ``(i, j)`` covers input pixels
    ``[i s, (i + 1) s) x [j s, (j + 1) s)``, as for a convolutional encoder that pads at the bottom and right:
    the maps are upsampled by ``s`` and the rows and columns past the input cropped, so at a size that is not
    a multiple of ``s`` the last row stays aligned. Without ``stride`` the maps are resized onto the input
    as a whole, which stretches them by up to one stride (the behaviour before ``stride`` existed).

    Args:
        model: a :class:`cct_weak.CAMClassifier` (anything with ``cams(x) -> (B, C, h, w)``).
        images: :math:`(B, 3, H, W)` float images, already normalised as the model expects.
        labels: multi-hot image labels :math:`(B, C)`; absent classes are zeroed. ``None``: keep all.
        scales: resize factors (original: 1.0, 0.5, 1.5, 2.0).
        flip: add the horizontally flipped image at every scale.
        output_size: ``(H_out, W_out)``; default the images' ``(H, W)``.
        stride: the model's output stride (e.g. 8 or 16); ``None``: resize the maps onto the input.

    Returns:
        float32 CAMs :math:`(B, C, H_{out}, W_{out})` in [0, 1].

    >>> from cct_weak import CAMClassifier
    >>> model = CAMClassifier(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), num_classes=4)
    >>> cams = compute_cams(model, torch.rand(2, 3, 32, 32), labels=torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]]))
    >>> cams.shape, bool(cams.min() >= 0), bool(cams.max() <= 1)  # at the images' size, in [0, 1]
    (torch.Size([2, 4, 32, 32]), True, True)
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if stride is not None and int(stride) < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    if len(scales) == 0 or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive factors, got {tuple(scales)}")
    b, _, h, w = images.shape
    size = (int(output_size[0]), int(output_size[1])) if output_size is not None else (h, w)
    was_training = model.training
    model.train(False)
    total: torch.Tensor | None = None
    try:
        with torch.no_grad():
            for s in scales:
                hs, ws = max(1, round(h * s)), max(1, round(w * s))
                x = (
                    images
                    if (hs, ws) == (h, w)
                    else F.interpolate(images, size=(hs, ws), mode="bilinear", align_corners=False)
                )
                if flip:
                    x = torch.cat([x, x.flip(-1)], dim=0)
                maps = model.cams(x).float()
                if maps.ndim != 4 or maps.shape[0] != x.shape[0]:
                    raise ValueError(f"model.cams must return (B, C, h, w), got {tuple(maps.shape)}")
                if stride is None:
                    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
                else:
                    maps = _onto_input(maps, (hs, ws), int(stride))
                    if maps.shape[-2:] != size:
                        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
                if flip:
                    maps = maps[:b] + maps[b:].flip(-1)
                total = maps if total is None else total + maps
    finally:
        model.train(was_training)
    assert total is not None
    return normalize_cams(total, labels)


def _onto_input(maps: torch.Tensor, input_size: tuple[int, int], stride: int) -> torch.Tensor:
    """CAMs ``(N, C, h, w)`` at ``stride`` of an input of ``input_size``, on its pixel grid ``(N, C, H, W)``."""
    s = stride
    h, w = maps.shape[-2:]
    if h * s < input_size[0] or w * s < input_size[1]:
        raise ValueError(
            f"CAMs of {h}x{w} at stride {s} cover {h * s}x{w * s} pixels, less than the "
            f"{input_size[0]}x{input_size[1]} input: is stride={s} the model's output stride?"
        )
    # Upsampling by exactly s puts cell centres at (i + 0.5) s, where the encoder saw them; the rows and
    # columns past the input are the encoder's padding, cropped rather than squeezed into the image.
    up = maps if s == 1 else F.interpolate(maps, size=(h * s, w * s), mode="bilinear", align_corners=False)
    return up[..., : input_size[0], : input_size[1]]
