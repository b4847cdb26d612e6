"""VAT inside other people's models, as they call it (issue 40): shared, closure and normalised decoders."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from cct_perturb import VAT, vat, vat_direction


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _norms(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (out.detach().float() - z.detach().float()).flatten(1).norm(dim=1)


def _buffers(module: nn.Module) -> dict[str, tuple[torch.Tensor, int, torch.Tensor]]:
    """name -> (the tensor object, its version counter, a copy of its value)."""
    return {n: (b, b._version, b.detach().clone()) for n, b in module.named_buffers()}


def _assert_untouched(module: nn.Module, before: dict[str, tuple[torch.Tensor, int, torch.Tensor]]) -> None:
    now = dict(module.named_buffers())
    assert now.keys() == before.keys()
    for name, (tensor, version, value) in before.items():
        assert now[name] is tensor, f"{name} was replaced"
        assert tensor._version == version, f"{name} was written in place"
        assert torch.equal(tensor, value), f"{name} changed"


class TwoInputDecoder(nn.Module):
    """UniMatch's DeepLabV3+ decoder in small: ``_decode(c1, c4)``, BatchNorm everywhere, logits at c1's size."""

    def __init__(self, c1: int = 6, c4: int = 12, mid: int = 8, classes: int = 4, norm: str = "bn") -> None:
        super().__init__()

        def block(cin: int, cout: int, k: int = 1) -> nn.Sequential:
            layer: nn.Module = nn.BatchNorm2d(cout) if norm == "bn" else nn.GroupNorm(2, cout)
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), layer, nn.ReLU())

        self.head = block(c4, mid)  # stands for ASPP
        self.reduce = block(c1, 4)
        self.fuse = nn.Sequential(block(mid + 4, mid, 3), block(mid, mid, 3))
        self.classifier = nn.Conv2d(mid, classes, 1)

    def _decode(self, c1: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        c4 = self.head(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        c1 = self.reduce(c1)
        return self.classifier(self.fuse(torch.cat([c1, c4], dim=1)))


def _features(seed: int = 0, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """c1 (B, 6, 16, 16) at stride 4 and c4 (B, 12, 4, 4) at stride 16 from a small encoder (with a graph)."""
    torch.manual_seed(seed)
    encoder = nn.ModuleDict({"c1": nn.Conv2d(3, 6, 3, 4, 1), "c4": nn.Conv2d(6, 12, 3, 4, 1)})
    x = torch.randn(batch, 3, 64, 64, generator=g(seed))
    c1 = encoder["c1"](x).relu()
    c4 = encoder["c4"](c1).relu()
    return c1, c4, encoder


# ---------------------------------------------------------------- 1. a shared decoder whose graph is alive
@pytest.mark.parametrize(
    ("method", "target"), [("auto", "own"), ("finite_difference", "own"), ("auto", "main")]
)
def test_shared_batchnorm_decoder_used_before_vat_backpropagates_after(method: str, target: str) -> None:
    """A decoder used for the clean prediction (graph alive), then by VAT, then on the perturbed features,
    and back-propagated once: it works, and the gradients and running statistics are those of the same
    step without the search (r_adv is a constant; the search's forwards count as nothing)."""
    torch.manual_seed(0)
    decoder = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 5, 1)
    ).train()
    encoder = nn.Conv2d(3, 8, 3, padding=1)
    ref_decoder, ref_encoder = copy.deepcopy(decoder), copy.deepcopy(encoder)
    x = torch.randn(4, 3, 10, 10, generator=g(1))
    labels = torch.randint(0, 5, (4, 10, 10), generator=g(2))
    main = torch.randn(4, 5, 10, 10, generator=g(3))

    z = encoder(x)
    clean = decoder(z)  # its graph saved BatchNorm's running stats at their current version
    before = _buffers(decoder)
    z_adv = vat(
        z,
        decoder,
        None if target == "own" else main,
        xi=1e-6 if method == "auto" else 1e-2,
        method=method,  # type: ignore[arg-type]
        generator=g(4),
    )
    _assert_untouched(decoder, before)
    loss = F.cross_entropy(clean, labels) + F.mse_loss(decoder(z_adv).softmax(1), clean.softmax(1).detach())
    loss.backward()  # failed with "modified by an inplace operation" when the stats were copied back

    # the same step without VAT in between: the same r_adv added as a constant
    r_adv = (z_adv - z).detach()
    ref_z = ref_encoder(x)
    ref_clean = ref_decoder(ref_z)
    ref_loss = F.cross_entropy(ref_clean, labels) + F.mse_loss(
        ref_decoder(ref_z + r_adv).softmax(1), ref_clean.softmax(1).detach()
    )
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    for (name, p), ref in zip(
        [*encoder.named_parameters(), *decoder.named_parameters()],
        [*ref_encoder.parameters(), *ref_decoder.parameters()],
        strict=True,
    ):
        torch.testing.assert_close(p.grad, ref.grad, rtol=0, atol=0, msg=name)
    for (name, b), ref in zip(decoder.named_buffers(), ref_decoder.buffers(), strict=True):
        assert torch.equal(b, ref), name  # two forwards counted, as without VAT
    assert int(decoder[1].num_batches_tracked) == 2


def test_the_vat_module_on_a_shared_decoder() -> None:
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1))
    z = torch.randn(2, 8, 5, 5, requires_grad=True)
    clean = decoder(z)
    before = _buffers(decoder)
    z_adv = VAT()(z, decoder, clean.detach(), generator=g(0))
    _assert_untouched(decoder, before)
    (clean.sum() + decoder(z_adv).sum()).backward()
    assert z.grad is not None


# ---------------------------------------------------------------- 2. a two-input decoder through a closure
@pytest.mark.parametrize("method", ["auto", "finite_difference"])
def test_two_input_decoder_through_a_closure_keeps_its_statistics(method: str) -> None:
    """UniMatch: ``vat(c4, lambda t: model._decode(c1, t))``: the closure's modules advance nothing."""
    c1, c4, _ = _features()
    model = TwoInputDecoder().train()
    out = model._decode(c1, c4)  # the clean forward of the step, graph alive
    before = _buffers(model)
    xi = 1e-6 if method == "auto" else 1e-2
    c4_adv = vat(c4, lambda t: model._decode(c1, t), xi=xi, method=method, generator=g(0))  # type: ignore[arg-type]
    _assert_untouched(model, before)
    assert torch.allclose(_norms(c4_adv, c4), torch.full((4,), 2.0), rtol=1e-5)
    # a bound method and functools.partial reach the same modules
    import functools

    same = vat(c4, functools.partial(model._decode, c1), xi=xi, method=method, generator=g(0))  # type: ignore[arg-type]
    _assert_untouched(model, before)
    torch.testing.assert_close(same, c4_adv)
    (out.sum() + model._decode(c1, c4_adv).sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_other_stateful_layers_and_eval_mode_are_left_alone() -> None:
    """Every buffer of every module the decoder calls: InstanceNorm with running stats, eval-mode BN."""
    torch.manual_seed(0)
    decoder = nn.Sequential(
        nn.Conv2d(8, 8, 1),
        nn.InstanceNorm2d(8, affine=True, track_running_stats=True),
        nn.BatchNorm2d(8).eval(),
        nn.ReLU(),
        nn.Conv2d(8, 3, 1),
    )
    z = torch.randn(2, 8, 5, 5)
    before = _buffers(decoder)
    vat(z, decoder, generator=g(0))
    vat(z, decoder, torch.randn(2, 3, 5, 5), generator=g(0))
    _assert_untouched(decoder, before)
    assert decoder[1].training
    assert not decoder[2].training
    decoder(z)  # and the caller's own forwards still update it
    assert not torch.equal(decoder[1].running_mean, before["1.running_mean"][2])


def test_a_failing_decoder_leaves_its_buffers_in_place() -> None:
    model = TwoInputDecoder().train()
    c1, c4, _ = _features()
    before = _buffers(model)
    with pytest.raises(RuntimeError):
        vat(c4, lambda t: model._decode(c1[:, :3], t), generator=g(0))  # wrong channels inside
    _assert_untouched(model, before)
    model._decode(c1, c4)
    assert int(model.head[1].num_batches_tracked) == 1


# ---------------------------------------------------------------- 3. bf16 autocast with normalisation layers
def _fp32_direction(decoder: nn.Module, z: torch.Tensor, seed: int) -> torch.Tensor:
    return vat_direction(z.float(), decoder, generator=g(seed))


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_cpu_bfloat16_autocast_with_batchnorm_and_groupnorm(norm: str) -> None:
    """method="auto" (forward-mode AD) under CPU bf16 autocast: it failed with "expected scalar type
    Float but found BFloat16" (the norm layers' forward-AD formulas return float32 tangents)."""
    _, _, encoder = _features(seed=1)
    model = TwoInputDecoder(norm=norm).train()
    before = _buffers(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c1_b = encoder["c1"](torch.randn(4, 3, 64, 64, generator=g(9))).relu()
        c4_b = encoder["c4"](c1_b).relu()
        assert c4_b.dtype == torch.bfloat16
        out = vat(c4_b, lambda t: model._decode(c1_b, t), generator=g(0))
        _assert_untouched(model, before)
        loss = model._decode(c1_b, out).float().square().mean()
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    assert torch.allclose(_norms(out, c4_b), torch.full((4,), 2.0), rtol=1e-2)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    assert encoder["c4"].weight.grad is not None
    # and it is the float32 direction, up to bf16's precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d16 = vat_direction(c4_b, lambda t: model._decode(c1_b, t), generator=g(5))
    d32 = _fp32_direction(lambda t: model._decode(c1_b.float(), t), c4_b.detach().float(), 5)  # type: ignore[arg-type]
    cos = F.cosine_similarity(d16.flatten(1), d32.flatten(1))
    assert torch.all(cos > 0.9), cos


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_bfloat16_model_without_autocast_with_norm_layers(norm: str) -> None:
    c1, c4, _ = _features(seed=2)
    model = TwoInputDecoder(norm=norm).to(torch.bfloat16)
    c1, c4 = c1.detach().to(torch.bfloat16), c4.detach().to(torch.bfloat16)
    out = vat(c4, lambda t: model._decode(c1, t), generator=g(0))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(_norms(out, c4), torch.full((4,), 2.0), rtol=1e-2)


# ---------------------------------------------------------------- layers without forward-mode AD
class _Square(torch.autograd.Function):
    """x^2 without a jvp: forward-mode AD cannot run it; its backward is differentiable."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _SquareOnce(_Square):
    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _SquareDecoder(nn.Module):
    def __init__(self, square) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        torch.manual_seed(0)
        self.a, self.bn, self.b = nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.Conv2d(16, 5, 1)
        self.square = square

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.square(self.bn(self.a(x))))


def test_a_layer_without_forward_ad_falls_back_to_double_backward() -> None:
    z = torch.randn(2, 8, 6, 6, generator=g(0))
    native = vat_direction(z, _SquareDecoder(lambda t: t * t), generator=g(1))
    decoder = _SquareDecoder(_Square.apply)
    before = _buffers(decoder)
    with pytest.warns(RuntimeWarning, match="forward-mode AD failed .* double backward"):
        got = vat_direction(z, decoder, generator=g(1))
    _assert_untouched(decoder, before)
    assert F.cosine_similarity(got.flatten(1), native.flatten(1)).min() > 0.9999
    assert all(p.grad is None for p in decoder.parameters())


def test_a_decoder_neither_mode_can_differentiate_is_named() -> None:
    z = torch.randn(2, 8, 6, 6)
    with pytest.raises(RuntimeError, match=r"vat: the exact xi -> 0 limit .* method='finite_difference'"):
        vat(z, _SquareDecoder(_SquareOnce.apply), generator=g(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the finite difference needs neither: no warning
        out = vat(z, _SquareDecoder(_SquareOnce.apply), xi=1e-3, method="finite_difference", generator=g(0))
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-5)
