"""Logits brought to the size of the image they were predicted from: :func:`fit_logits`, the one place
where training, evaluation, prediction and export meet the labels or the image.

Why not a plain resize (issue #39). An encoder of output stride ``s`` with padded convolutions gives
``ceil(H / s)`` feature rows, and decoders that upsample by ``s`` give ``ceil(H / s) * s`` logit rows, the
image in their top-left corner: 180 rows -> 23 feature rows -> 184 logit rows. Row ``r`` of the logits is
image row ``r`` (what training on crops divisible by ``s`` teaches the decoder), and the last rows are the
padding of the last feature cell. Resizing 184 rows onto 180 shifts the rows by up to 4 pixels: issue #39
measured 31.54 (resized) vs 32.08 (cropped) mIoU on one 180x240 baseline, and a perfect prediction resized
that way scored 84.9.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

__all__ = ["fit_logits", "padded_size"]


def padded_size(size: Sequence[int], stride: int) -> tuple[int, int]:
    """``(ceil(H / stride) * stride, ceil(W / stride) * stride)``: the extent that the logits of an image of
    ``size`` cover when its encoder has output ``stride`` and the decoders upsample by it.

    >>> padded_size((180, 240), 8)
    (184, 240)
    """
    if stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    height, width = (int(v) for v in size)
    return -(-height // stride) * stride, -(-width // stride) * stride


def fit_logits(logits: Tensor, size: Sequence[int], *, stride: int) -> Tensor:
    """Logits ``(B, C, h, w)`` predicted from an image of ``size`` ``(H, W)`` -> ``(B, C, H, W)``.

    - ``(h, w)`` is the padded extent ``padded_size(size, stride)`` (larger by less than one stride on each
      axis, a multiple of it): the logits are at the image's pixel pitch, its top-left corner aligned, and
      the extra rows and columns are the padding of the last feature cell: they are CROPPED. Resizing them
      onto the image would shift every row (see the module docstring).
    - any other size is a genuine resolution difference (logits at a lower resolution than the image, e.g. a
      stride-4 head; a decoder whose upsampling is not the encoder's stride, e.g. x16 after a ViT/14; an
      encoder that drops the incomplete last cell): bilinear interpolation to ``size``.
    - the same tensor when the size already matches.

    ``stride``: the encoder's output stride (``CCTModel.output_stride``); ``1`` for logits of unknown origin
    (a plain resize). ``size`` must be the size of the image the logits were predicted from (or of its
    labels): after an explicit resize of the input (multi-scale testing, ``cct predict --size``) the
    difference is genuine and the caller resizes with ``F.interpolate``.

    >>> import torch
    >>> fit_logits(torch.zeros(1, 3, 184, 240), (180, 240), stride=8).shape  # cropped
    torch.Size([1, 3, 180, 240])
    >>> fit_logits(torch.zeros(1, 3, 45, 60), (180, 240), stride=8).shape  # interpolated
    torch.Size([1, 3, 180, 240])
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, h, w), got shape {tuple(logits.shape)}")
    height, width = (int(v) for v in size)
    have = (int(logits.shape[-2]), int(logits.shape[-1]))
    if have == (height, width):
        return logits
    if have == padded_size((height, width), stride):
        return logits[..., :height, :width]
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
