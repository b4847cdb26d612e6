"""The small modules of CCT: the PSP head of the encoder and the sub-pixel decoders (main and auxiliary).

- :class:`PSPModule`: pyramid pooling (Zhao et al. 2017) on the backbone's deepest map,
  ``(B, D_in, h, w) -> (B, out_channels, h, w)``.
- :func:`icnr_`: ICNR initialisation of a sub-pixel convolution (Aitken et al. 2017).
- :class:`SubPixelBlock`: 1x1 conv ``C -> 4C``, ReLU, ``PixelShuffle(2)``: ``(B, C, h, w) -> (B, C, 2h, 2w)``.
- :class:`UpsampleDecoder`: 1x1 conv ``D -> C`` then ``log2(upscale)`` sub-pixel blocks,
  ``(B, D, h, w) -> (B, C, h * upscale, w * upscale)``.

The fused consistency loss of K such decoders (``fused_consistency_loss``, ``SubPixelRows``,
``subpixel_order``) is part of the objective: :mod:`cct_train.objectives.fused`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PSPModule",
    "SubPixelBlock",
    "UpsampleDecoder",
    "icnr_",
    # moved to cct_train.objectives.fused (issue #16), still importable from here:
    "SubPixelRows",
    "fused_consistency_loss",
    "subpixel_order",
]


class PSPModule(nn.Module):
    """Pyramid pooling module: CCT's encoder head (bins 1, 2, 3, 6; 512 output channels in the original).

    For each bin ``b``: adaptive average pooling to ``b x b``, 1x1 conv to ``in_channels // len(bins)``
    channels, BatchNorm, ReLU, bilinear upsampling back to ``h x w``; the pyramids are concatenated with the
    input and fused by a 3x3 conv + BatchNorm + ReLU to ``out_channels``.

    Shapes: ``(B, in_channels, h, w) -> (B, out_channels, h, w)``. In training mode BatchNorm on the
    ``1 x 1`` bin needs a batch of at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int = 512, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not bins:
            raise ValueError("bins must not be empty")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.bins = tuple(int(b) for b in bins)
        branch = max(1, in_channels // len(self.bins))
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, branch, kernel_size=1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(
                in_channels + branch * len(self.bins), out_channels, kernel_size=3, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, h, w) -> (B, out_channels, h, w)``."""
        size = x.shape[-2:]
        pyramids = [x]
        pyramids.extend(
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages
        )
        out: Tensor = self.bottleneck(torch.cat(pyramids, dim=1))
        return out


@torch.no_grad()
def icnr_(
    weight: Tensor,
    upscale: int = 2,
    init: Callable[[Tensor], object] = nn.init.kaiming_normal_,
) -> Tensor:
    """ICNR initialisation, in place, of a conv weight ``(out, in, kh, kw)`` that feeds ``PixelShuffle(upscale)``.

    A sub-kernel of ``out // upscale**2`` filters is drawn with ``init`` and each filter is repeated
    ``upscale**2`` times consecutively (``PixelShuffle`` maps channels ``c * r**2 ... c * r**2 + r**2 - 1``
    to the ``r x r`` block of output channel ``c``), so at initialisation conv + shuffle equals the sub-kernel
    conv followed by nearest-neighbour upsampling: no checkerboard artefacts (Aitken et al. 2017).

    Returns:
        ``weight`` (modified in place).
    """
    factor = upscale**2
    out_ch = weight.shape[0]
    if out_ch % factor:
        raise ValueError(f"ICNR needs out channels ({out_ch}) divisible by upscale**2 ({factor})")
    sub = torch.empty((out_ch // factor, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    init(sub)
    weight.copy_(sub.repeat_interleave(factor, dim=0))
    return weight


class SubPixelBlock(nn.Module):
    """Sub-pixel upsampling x2: 1x1 conv ``C -> 4C``, ReLU, ``PixelShuffle(2)`` (ICNR-initialised).

    As in the paper ("1x1 conv C -> 4C, ReLU, shuffle") and the original code. ReLU and the shuffle
    commute (the shuffle only moves elements), so the order is immaterial. The bias gets PyTorch's default
    range ``U(-1/sqrt(C), 1/sqrt(C))`` drawn for the sub-kernel and repeated like the weight, which keeps
    the ICNR property exactly (each 2x2 output block constant at initialisation).

    Shapes: ``(B, C, h, w) -> (B, C, 2h, 2w)``.
    """

    def __init__(self, channels: int, *, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, kernel_size=1)
        icnr_(self.conv.weight, upscale=2)
        if self.conv.bias is not None:
            bound = 1.0 / math.sqrt(channels)
            with torch.no_grad():
                sub_bias = torch.empty(channels).uniform_(-bound, bound)
                self.conv.bias.copy_(sub_bias.repeat_interleave(4))
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, h, w) -> (B, C, 2h, 2w)``."""
        out: Tensor = self.shuffle(self.relu(self.conv(x)))
        return out


class UpsampleDecoder(nn.Module):
    """CCT's decoder (main and auxiliary): 1x1 conv ``D -> C``, then ``log2(upscale)`` sub-pixel blocks.

    Deviation from the paper, on purpose: the last block has no ReLU by default (see ``final_relu``).

    Three blocks for an encoder of output stride 8 (the paper), four for 16, five for 32. The output is at
    ``h * upscale``; the caller resizes it to the input size when they differ (input not divisible by the
    stride). ``upscale`` must be a power of two (1 gives no block).

    Args:
        in_channels: ``D``, channels of ``z``.
        num_classes: ``C``.
        upscale: total upsampling factor (the encoder's output stride).
        hidden_relu: the ReLU of every block but the last, as the paper. ``False`` makes the decoder linear
            (1x1 conv and linear sub-pixel upsampling): at width C the hidden ReLUs can die all but
            one channel group within the first steps of a high learning rate (measured on CamVid with a
            pretrained EfficientNet-Lite0 at lr 0.05: 40 of 44 channels of the first block dead at every pixel
            by step 10, and the model then predicts only 3 of 11 classes; docs/log/research-log.md).
        final_relu: keep the ReLU of the LAST block too, as the paper and the original code do. Default
            ``False``: the last block is conv + shuffle, so the logits are unconstrained. With the final
            ReLU the logits are >= 0 and a class channel whose pre-activation is negative at every pixel
            gets no gradient at all: measured on fresh decoders over PSP-like features, about 40% of them
            (C = 11 or 21; more for C = 2 or 3) start with at least one class dead over the whole batch,
            against 0-5% without it. The earlier blocks keep their ReLU.

    Shapes: ``(B, D, h, w) -> (B, C, h * upscale, w * upscale)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        upscale: int = 8,
        *,
        final_relu: bool = False,
        hidden_relu: bool = True,
    ) -> None:
        super().__init__()
        if upscale < 1 or upscale & (upscale - 1):
            raise ValueError(f"upscale must be a power of two, got {upscale}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.upscale = int(upscale)
        n_blocks = int(math.log2(upscale))
        self.conv1x1 = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.conv1x1.weight, nonlinearity="relu")
        self.blocks = nn.Sequential(
            *(
                SubPixelBlock(num_classes, relu=final_relu if i == n_blocks - 1 else hidden_relu)
                for i in range(n_blocks)
            )
        )

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, h, w) -> (B, C, h * upscale, w * upscale)`` logits."""
        out: Tensor = self.blocks(self.conv1x1(z))
        return out


# The fused objective reads these modules only through their parts (no import back at run time), so the
# re-export below closes no cycle.
from cct_train.objectives.fused import SubPixelRows, fused_consistency_loss, subpixel_order  # noqa: E402
