"""The fast CPU depthwise path computes what nn.Conv2d computes: values and both gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cct_train.models.depthwise import (
    FastDepthwiseConv2d,
    depthwise_conv2d,
    is_rewritable,
    use_fast_depthwise,
)
from cct_train.models.encoders import build_encoder


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, dilation: int) -> torch.Tensor:
    k = w.shape[-1]
    return F.conv2d(x, w, b, padding=dilation * (k // 2), dilation=dilation, groups=x.shape[1])


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_match_conv2d(dilation: int, kernel: int, bias: bool) -> None:
    # Odd sizes that the dilation does not divide: the sub-grids are padded and cropped back.
    gen = torch.Generator().manual_seed(dilation * 10 + kernel)
    x = torch.randn(2, 6, 13, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 1, kernel, kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    grad_out = torch.randn(2, 6, 13, 11, generator=gen, dtype=torch.float64)
    inputs = (x, w) if b is None else (x, w, b)

    fast = depthwise_conv2d(x, w, b, dilation=(dilation, dilation))
    ref = _reference(x, w, b, dilation)
    torch.testing.assert_close(fast, ref)
    fast_grads = torch.autograd.grad(fast, inputs, grad_out)
    ref_grads = torch.autograd.grad(ref, inputs, grad_out)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_gradcheck_rectangular_kernel_and_dilation() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 7, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: depthwise_conv2d(a, b, dilation=(2, 3)), (x, w))


def test_only_the_asked_gradients_are_computed() -> None:
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 1, 3, 3)  # frozen kernel
    depthwise_conv2d(x, w, dilation=(2, 2)).sum().backward()
    assert x.grad is not None
    assert w.grad is None


def test_bad_shapes_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"\(C, 1, kh, kw\)"):
        depthwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(3, 1, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        depthwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 1, 2, 2))


def test_which_layers_are_rewritten() -> None:
    assert is_rewritable(nn.Conv2d(8, 8, 5, padding=4, dilation=2, groups=8))
    assert is_rewritable(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    assert not is_rewritable(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8))  # strided
    assert not is_rewritable(nn.Conv2d(8, 16, 3, padding=1, groups=8))  # channel multiplier
    assert not is_rewritable(nn.Conv2d(8, 8, 3, padding=1))  # dense
    assert not is_rewritable(nn.Conv2d(8, 8, 3, padding=2, groups=8))  # not "same"
    assert not is_rewritable(nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect"))

    class Custom(nn.Conv2d):  # subclasses may pad dynamically (timm's Conv2dSame): left alone
        pass

    assert not is_rewritable(Custom(8, 8, 3, padding=1, groups=8))


def test_the_rewrite_keeps_parameters_and_state_dict() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4), nn.Conv2d(4, 8, 1))
    weight = model[0].weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_fast_depthwise(model) == 1
    assert type(model[0]) is FastDepthwiseConv2d
    assert model[0].weight is weight
    assert type(model[1]) is nn.Conv2d
    assert model.state_dict().keys() == before.keys()
    assert use_fast_depthwise(model) == 0  # already rewritten: nothing left to do


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_matches_native_autocast(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    native = nn.Conv2d(16, 16, 5, padding=8, dilation=4, groups=16)
    fast = nn.Conv2d(16, 16, 5, padding=8, dilation=4, groups=16)
    fast.load_state_dict(native.state_dict())
    use_fast_depthwise(fast)
    x = torch.randn(2, 16, 12, 16)
    outs = []
    for layer in (native, fast):
        layer.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            y = layer(x)
        assert y.dtype == dtype
        y.float().square().sum().backward()
        assert layer.weight.grad is not None
        assert layer.weight.grad.dtype == torch.float32
        outs.append((y.detach().float(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for got, want in zip(outs[1], outs[0], strict=True):
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * float(want.abs().max()))


def test_efficientnet_at_output_stride_8_is_unchanged() -> None:
    """The layers the rewrite exists for (dilated 3x3 / 5x5 depthwise of EfficientNet at OS 8): the same
    features and gradients as the model built without it."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    fast = build_encoder("timm:tf_efficientnet_lite0", output_stride=8)
    plain = build_encoder("timm:tf_efficientnet_lite0", output_stride=8, fast_depthwise=False)
    plain.load_state_dict(fast.state_dict())
    assert sum(isinstance(m, FastDepthwiseConv2d) for m in fast.modules()) >= 10
    assert not any(isinstance(m, FastDepthwiseConv2d) for m in plain.modules())
    x = torch.randn(2, 3, 64, 96)
    outs = []
    for enc in (plain, fast):
        enc.train()
        out = enc(x)
        out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
        outs.append((out.detach(), grads))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    assert outs[1][1].keys() == outs[0][1].keys()
    for name, want in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], want, rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_other_devices_take_the_native_path() -> None:
    layer = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
    reference = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
    reference.load_state_dict(layer.state_dict())
    use_fast_depthwise(layer)
    x = torch.randn(2, 8, 9, 9, device="cuda")
    torch.testing.assert_close(layer.cuda()(x), reference.cuda()(x))
