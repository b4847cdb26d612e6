"""Classification branch for weak labels: global average pooling + linear, and its class activation maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CAMClassifier",
    "class_activation_maps",
    "image_labels_from_masks",
    "last_feature_map",
    "multilabel_loss",
]


def last_feature_map(out: Any) -> torch.Tensor:
    """Pick the feature map from an encoder output.

    Args:
        out: a tensor :math:`(B, D, h, w)`, a list / tuple of such maps (the last one is taken, as with
            ``timm`` ``features_only`` or ``segmentation_models_pytorch`` encoders) or a mapping (its last
            value is taken).

    Returns:
        the feature map :math:`(B, D, h, w)`.
    """
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, Sequence) and not isinstance(out, torch.Tensor):
        if len(out) == 0:
            raise ValueError("the encoder returned an empty sequence of feature maps")
        out = out[-1]
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the encoder must return a feature map (B, D, h, w), got {shape}")
    return out


def class_activation_maps(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = True
) -> torch.Tensor:
    r"""Class activation maps: the classifier weights applied at every position (a 1x1 convolution).

    Because pooling and the linear map commute, ``class_activation_maps(z, W, b, relu=False).mean((2, 3))``
    equals ``linear(z.mean((2, 3)), W, b)``: the CAM of class ``c`` is its logit before averaging.

    Args:
        features: feature map :math:`(B, D, h, w)`.
        weight: linear weights :math:`(C, D)`.
        bias: optional bias :math:`(C,)`; CAMs conventionally leave it out (default ``None``).
        relu: clamp negative evidence to zero (the usual CAM definition).

    Returns:
        CAMs :math:`(B, C, h, w)`, in the dtype of ``features``.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, D, h, w), got {tuple(features.shape)}")
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must be (C, D) with D = {features.shape[1]}, got {tuple(weight.shape)}")
    cams = F.conv2d(features, weight[:, :, None, None].to(features.dtype), bias)
    return F.relu(cams) if relu else cams


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-label binary cross-entropy on image-level labels.

    Args:
        logits: classifier outputs :math:`(B, C)`.
        labels: multi-hot targets :math:`(B, C)` in ``{0, 1}`` (any dtype; soft targets in [0, 1] work too).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, as in
            :func:`torch.nn.functional.binary_cross_entropy_with_logits`.

    Returns:
        the loss: a scalar, or :math:`(B, C)` with ``reduction="none"``.
    """
    if logits.shape != labels.shape or logits.ndim != 2:
        raise ValueError(
            f"logits and labels must both be (B, C), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)


def image_labels_from_masks(
    masks: torch.Tensor, num_classes: int, ignore_index: int = 255, min_pixels: int = 1
) -> torch.Tensor:
    """Image-level multi-hot labels from dense masks (batched, no per-sample loop).

    Args:
        masks: integer label maps :math:`(B, H, W)` (or :math:`(H, W)`, returned as :math:`(1, C)`).
        num_classes: ``C``.
        ignore_index: label value that is not counted.
        min_pixels: a class is present in an image when it covers at least this many pixels.

    Returns:
        float multi-hot labels :math:`(B, C)` in ``{0, 1}`` on the device of ``masks``.

    Raises:
        ValueError: for a label outside ``[0, C)`` that is not ``ignore_index``.

    >>> image_labels_from_masks(torch.tensor([[[0, 2], [255, 2]]]), num_classes=3).tolist()
    [[1.0, 0.0, 1.0]]
    """
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got {tuple(masks.shape)}")
    if masks.is_floating_point():
        raise ValueError("masks must hold integer labels")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    b = masks.shape[0]
    flat = masks.reshape(b, -1).long()
    valid = flat != ignore_index
    bad = valid & ((flat < 0) | (flat >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"masks hold labels outside [0, {num_classes}) other than ignore_index={ignore_index}"
        )
    offsets = torch.arange(b, device=masks.device)[:, None] * num_classes
    index = (flat + offsets)[valid]
    counts = torch.bincount(index, minlength=b * num_classes).reshape(b, num_classes)
    return (counts >= min_pixels).float()


def _infer_in_features(encoder: nn.Module, in_channels: int, dry_run_size: int) -> int:
    channels = getattr(encoder, "out_channels", None)
    if isinstance(channels, Sequence) and not isinstance(channels, str) and len(channels) > 0:
        channels = channels[-1]
    if isinstance(channels, int) and channels > 0:
        return channels
    # No usable attribute: one forward pass in eval mode, without gradients, on the encoder's device.
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, dry_run_size, dry_run_size, device=device, dtype=dtype)
            return int(last_feature_map(encoder(x)).shape[1])
    finally:
        encoder.train(was_training)


class CAMClassifier(nn.Module):
    r"""An encoder plus a classification branch (global average pooling + linear) for image-level labels.

    Train it with :func:`multilabel_loss` on :math:`(B, C)` multi-hot labels; then :meth:`cams` gives the
    class activation maps, the linear weights applied at every position of the feature map.

    Args:
        encoder: any module whose forward maps images :math:`(B, 3, H, W)` to a feature map
            :math:`(B, D, h, w)` or to a list of maps (the last one is used).
        num_classes: ``C``, the number of image-level classes (VOC-style datasets may include the
            background class here: see :func:`cct_weak.cams_to_pseudo_labels`).
        in_features: ``D``. When ``None``: the encoder's ``out_channels`` attribute (an int, or the last
            entry of a list), else one dry forward pass on a zero image.
        in_channels: channels of the dry-run image (only used to infer ``D``).
        dry_run_size: spatial size of the dry-run image (only used to infer ``D``).

    Shapes:
        - ``forward``: :math:`(B, 3, H, W) \to (B, C)` logits.
        - ``cams``: :math:`(B, 3, H, W) \to (B, C, h, w)`, non-negative.

    >>> encoder = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)
    >>> model = CAMClassifier(encoder, num_classes=5)
    >>> images = torch.zeros(2, 3, 32, 32)
    >>> model(images).shape, model.cams(images).shape
    (torch.Size([2, 5]), torch.Size([2, 5, 8, 8]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        in_features: int | None = None,
        *,
        in_channels: int = 3,
        dry_run_size: int = 64,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder = encoder
        self.num_classes = int(num_classes)
        if in_features is None:
            in_features = _infer_in_features(encoder, in_channels, dry_run_size)
        self.in_features = int(in_features)
        self.classifier = nn.Linear(self.in_features, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder feature map :math:`(B, D, h, w)` of images :math:`(B, 3, H, W)`."""
        z = last_feature_map(self.encoder(x))
        if z.shape[1] != self.in_features:
            raise ValueError(
                f"the encoder gave {z.shape[1]} channels, the classifier expects {self.in_features}"
            )
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-label logits :math:`(B, C)` (global average pooling, then linear)."""
        return self.classifier(self.features(x).mean(dim=(2, 3)))

    def cams(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        """Class activation maps :math:`(B, C, h, w)` at the feature resolution (no bias; ReLU by default)."""
        return class_activation_maps(self.features(x), self.classifier.weight, relu=relu)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
