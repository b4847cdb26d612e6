"""Depthwise convolutions that train fast on the CPU: the same layer, the same weights, another kernel path.

Why this exists: on the CPU, PyTorch's (oneDNN's) backward of a depthwise convolution is 5-20x slower than
its forward, and a dilated one (what ``output_stride=8`` turns the last stages of EfficientNet / MobileNet
into) is slow in both directions: measured on a Xeon with AMX-BF16, one thread, a 5x5 depthwise layer of
1152 channels on a (4, 1152, 12, 16) map at dilation 4 took 53 ms forward + backward under bf16 autocast,
13 ms on this path (`docs/log/research-log.md`, "Round 4"). Two exact rewrites remove it:

- **dilation -> batch** (the "atrous via space-to-batch" identity): a stride-1 convolution with dilation
  ``d`` and "same" padding ``d * (k - 1) / 2`` is the undilated convolution with padding ``(k - 1) / 2`` on
  each of the ``d x d`` interleaved sub-grids of the input, the sub-grids stacked along the batch;
- **the backward as forward convolutions**: the input's gradient is the depthwise convolution of the output
  gradient with the flipped kernel, and the kernel's gradient is one grouped convolution of the input with
  the output gradient as its kernel (one group per sample and channel), summed over the samples.

Only stride-1 depthwise layers with zero "same" padding are rewritten (the strided ones are few, at high
resolution, and fast already); anything else, and every tensor that is not on the CPU, takes PyTorch's own
path. Forward-mode AD (``torch.func.jvp``) is not supported through the rewritten layers: CCT's I-VAT
differentiates the decoders forward, never the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FastDepthwiseConv2d", "depthwise_conv2d", "is_rewritable", "use_fast_depthwise"]


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """Undilated, stride-1 depthwise convolution whose backward runs as two forward convolutions."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: Tensor, weight: Tensor, padding: tuple[int, int]
    ) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding  # type: ignore[attr-defined]
        return F.conv2d(x, weight, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        ph, pw = ctx.padding  # type: ignore[attr-defined]
        batch, channels, height, width = x.shape
        kh, kw = weight.shape[-2:]
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            # The transposed convolution of stride 1 is a correlation with the flipped kernel.
            grad_x = F.conv2d(grad, weight.flip(-2, -1), padding=(kh - 1 - ph, kw - 1 - pw), groups=channels)
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            # w[c, i, j] = sum_{b, y, x} x_pad[b, c, y + i, x + j] * grad[b, c, y, x]: the output gradient
            # of each (sample, channel) as the kernel of its own group; the sum over samples in float32
            # at least (bf16 / fp16 would round a sum of up to dilation**2 * B terms).
            per_sample = F.conv2d(
                x.reshape(1, batch * channels, height, width),
                grad.reshape(batch * channels, 1, grad.shape[-2], grad.shape[-1]),
                padding=(ph, pw),
                groups=batch * channels,
            )
            acc = torch.promote_types(weight.dtype, torch.float32)
            grad_w = (
                per_sample.reshape(batch, channels, kh, kw).sum(0, dtype=acc).unsqueeze(1).to(weight.dtype)
            )
        return grad_x, grad_w, None


def _to_sub_grids(x: Tensor, dilation: tuple[int, int]) -> Tensor:
    """(B, C, H, W) -> (dh * dw * B, C, ceil(H / dh), ceil(W / dw)), zero-padded at the bottom / right."""
    dh, dw = dilation
    batch, channels, height, width = x.shape
    hp, wp = -(-height // dh), -(-width // dw)
    x = F.pad(x, (0, wp * dw - width, 0, hp * dh - height))
    x = x.reshape(batch, channels, hp, dh, wp, dw).permute(3, 5, 0, 1, 2, 4)
    return x.reshape(dh * dw * batch, channels, hp, wp)


def _from_sub_grids(y: Tensor, dilation: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """The inverse of :func:`_to_sub_grids`, cropped back to ``size`` = (H, W)."""
    dh, dw = dilation
    channels, hp, wp = y.shape[1:]
    batch = y.shape[0] // (dh * dw)
    y = y.reshape(dh, dw, batch, channels, hp, wp).permute(2, 3, 4, 0, 5, 1)
    return y.reshape(batch, channels, hp * dh, wp * dw)[:, :, : size[0], : size[1]]


def depthwise_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, dilation: tuple[int, int] = (1, 1)
) -> Tensor:
    """Stride-1 depthwise convolution with zero "same" padding, ``dilation * (k - 1) / 2`` on each side.

    The same result as ``F.conv2d(x, weight, bias, padding=dilation * (k // 2), dilation=dilation,
    groups=C)`` (up to the order of float sums), computed as described in the module docstring.

    Args:
        x: (B, C, H, W).
        weight: (C, 1, kh, kw), ``kh`` and ``kw`` odd.
        bias: (C,) or None.
        dilation: (dh, dw).

    Returns:
        (B, C, H, W), in the dtype of ``x`` and ``weight`` (cast them first under autocast: see
        :class:`FastDepthwiseConv2d`).
    """
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[0] != x.shape[1] or weight.shape[1] != 1:
        raise ValueError(
            f"depthwise_conv2d: x must be (B, C, H, W) and weight (C, 1, kh, kw), got {tuple(x.shape)} "
            f"and {tuple(weight.shape)}"
        )
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"depthwise_conv2d: the kernel must have odd sides for 'same' padding, got {kh}x{kw}"
        )
    padding = (kh // 2, kw // 2)
    size = (x.shape[-2], x.shape[-1])
    dilated = dilation != (1, 1)
    inputs = _to_sub_grids(x, dilation) if dilated else x
    out = _DepthwiseConv2dFunction.apply(inputs, weight, padding)
    if dilated:
        out = _from_sub_grids(out, dilation, size)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class FastDepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (depthwise, stride 1, zero "same" padding) whose CPU forward and backward run
    through :func:`depthwise_conv2d`; on any other device it is ``nn.Conv2d`` itself. Same parameters,
    same state dict: :func:`use_fast_depthwise` turns existing layers into it in place."""

    def forward(self, input: Tensor) -> Tensor:
        if input.device.type != "cpu":
            return super().forward(input)
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu"):
            # The kernels below run with autocast off, so cast as autocast would have (conv2d is on its
            # lower-precision list); the casts stay differentiable, so the float32 parameters get their grads.
            dtype = torch.get_autocast_dtype("cpu")
            input, weight = input.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return depthwise_conv2d(input, weight, bias, dilation=self.dilation)  # type: ignore[arg-type]


def is_rewritable(module: nn.Module) -> bool:
    """Whether ``module`` is a plain ``nn.Conv2d`` that :class:`FastDepthwiseConv2d` computes exactly:
    depthwise (groups = in = out channels), stride 1, zero padding equal to ``dilation * (k - 1) / 2``,
    odd kernel sides. Subclasses (timm's ``Conv2dSame`` with its dynamic padding...) are left alone."""
    if type(module) is not nn.Conv2d:
        return False
    kh, kw = module.kernel_size
    dh, dw = module.dilation
    return (
        module.groups == module.in_channels == module.out_channels
        and module.stride == (1, 1)
        and module.padding_mode == "zeros"
        and kh % 2 == 1
        and kw % 2 == 1
        and module.padding == (dh * (kh // 2), dw * (kw // 2))
    )


def use_fast_depthwise(module: nn.Module) -> int:
    """Turn every rewritable depthwise layer of ``module`` (:func:`is_rewritable`) into a
    :class:`FastDepthwiseConv2d`, in place (the parameters stay the same objects); returns how many."""
    count = 0
    for layer in module.modules():
        if is_rewritable(layer):
            # A class swap, not a new module: the parameters, hooks and any optimizer that holds them
            # stay valid, and the state dict is unchanged.
            layer.__class__ = FastDepthwiseConv2d
            count += 1
    return count
