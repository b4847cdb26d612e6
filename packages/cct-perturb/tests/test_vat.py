from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cct_perturb import VAT, vat, vat_direction


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _decoder(d: int = 8, c: int = 5, up: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(d, 16, 1), nn.ReLU(), nn.Conv2d(16, c, 1), nn.Upsample(scale_factor=up, mode="bilinear")
    )


def _norms(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (out.detach().float() - z.detach().float()).flatten(1).norm(dim=1)


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0.01, 10.0), xi=st.sampled_from([1e-6, 1e-3, 1.0]), seed=st.integers(0, 1000))
def test_norm_equals_eps_per_sample(eps: float, xi: float, seed: int) -> None:
    z = torch.randn(3, 8, 6, 6, generator=g(seed)) * 10
    target = torch.randn(3, 5, 12, 12, generator=g(seed + 1))
    out = vat(z, _decoder(), target, xi=xi, eps=eps, generator=g(seed))
    assert torch.allclose(_norms(out, z), torch.full((3,), eps), rtol=1e-4, atol=1e-5)


def test_grads_untouched_and_graph_to_z() -> None:
    encoder = nn.Conv2d(3, 8, 3, padding=1)
    dec = _decoder()
    dec[0].weight.grad = torch.full_like(dec[0].weight, 0.5)
    encoder.bias.grad = torch.full_like(encoder.bias, -2.0)
    before = {n: (None if p.grad is None else p.grad.clone()) for n, p in dec.named_parameters()}
    z = encoder(torch.randn(2, 3, 6, 6))
    target = torch.randn(2, 5, 12, 12, requires_grad=True)
    out = vat(z, dec, target, generator=g(0))
    for n, p in dec.named_parameters():
        if before[n] is None:
            assert p.grad is None, n
        else:
            assert torch.equal(p.grad, before[n]), n
    assert encoder.weight.grad is None
    assert torch.equal(encoder.bias.grad, torch.full((8,), -2.0))
    assert target.grad is None
    # the returned tensor keeps z's graph, with r_adv a constant
    assert out.requires_grad
    leaf = torch.randn(2, 8, 6, 6, requires_grad=True)
    out = vat(leaf, dec, target, generator=g(0))
    assert leaf.grad is None
    out.sum().backward()
    assert leaf.grad is not None
    assert torch.all(leaf.grad == 1)
    assert torch.equal(dec[0].weight.grad, before["0.weight"])


def test_z_without_grad_and_inside_no_grad() -> None:
    z = torch.randn(2, 8, 6, 6)
    target = torch.randn(2, 5, 12, 12)
    out = vat(z, _decoder(), target, generator=g(0))
    assert not out.requires_grad
    with torch.no_grad():
        out2 = vat(z, _decoder(), target, generator=g(0))
    assert torch.equal(out, out2)


def test_is_adversarial() -> None:
    dec = _decoder(seed=1)
    z = torch.randn(4, 8, 6, 6, generator=g(0))
    target = torch.randn(4, 5, 12, 12, generator=g(1)) * 3

    def kl(features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            log_q = F.log_softmax(dec(features), 1)
            p = F.softmax(target, 1)
            return (p * (p.log() - log_q)).sum(1).mean((1, 2))

    eps = 0.5
    adv = kl(vat(z, dec, target, eps=eps, generator=g(2))) - kl(z)
    rnd = torch.rand(z.shape, generator=g(3)) - 0.5
    rnd = rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    random = kl(z + rnd) - kl(z)
    assert torch.all(adv > 0)
    assert torch.all(adv > random)


def test_autocast_bfloat16_cpu() -> None:
    encoder = nn.Conv2d(3, 8, 1)
    dec = _decoder()
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(x)
        target = dec(z)
        out = vat(z, dec, target.detach(), generator=g(0))
    assert z.dtype == torch.bfloat16
    assert out.dtype == torch.bfloat16
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-2)
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert encoder.weight.grad is not None
    assert all(p.grad is None for p in dec.parameters())


def test_bfloat16_model_without_autocast() -> None:
    dec = _decoder().to(torch.bfloat16)
    z = torch.randn(2, 8, 6, 6, dtype=torch.bfloat16)
    out = vat(z, dec, torch.randn(2, 5, 12, 12, dtype=torch.bfloat16), generator=g(0))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-2)


def test_train_mode_preserved_and_target_size_mismatch() -> None:
    for train in (True, False):
        dec = _decoder(up=1).train(train)
        z = torch.randn(2, 8, 6, 6)
        out = vat(z, dec, torch.randn(2, 5, 24, 24), generator=g(0))  # decoder outputs 6 x 6
        assert dec.training is train
        assert all(m.training is train for m in dec.modules())
        assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-4)


def test_zero_gradient_no_nan() -> None:
    const = torch.randn(1, 5, 12, 12)

    def dead_decoder(features: torch.Tensor) -> torch.Tensor:
        return const.expand(features.shape[0], -1, -1, -1) + 0 * features.sum()

    z = torch.randn(2, 8, 6, 6)
    out = vat(z, dead_decoder, torch.randn(2, 5, 12, 12), generator=g(0))
    assert torch.isfinite(out).all()
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-4)


def test_iterations_determinism_and_module() -> None:
    dec = _decoder()
    z = torch.randn(2, 8, 6, 6)
    target = torch.randn(2, 5, 12, 12)
    a = vat(z, dec, target, iterations=2, generator=g(0))
    b = vat(z, dec, target, iterations=2, generator=g(0))
    assert torch.equal(a, b)
    assert torch.allclose(_norms(a, z), torch.full((2,), 2.0), rtol=1e-4)
    m = VAT(xi=1e-6, eps=2.0, iterations=2)
    assert VAT.inputs == "decoder"
    assert torch.equal(m(z, dec, target, generator=g(0)), a)
    d = vat_direction(z, dec, target, generator=g(0))
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError):
        vat(z, dec, target, iterations=0)


def test_samples_are_independent() -> None:
    dec = _decoder()
    z = torch.randn(3, 8, 6, 6)
    target = torch.randn(3, 5, 12, 12)
    full = vat_direction(z, dec, target, iterations=1, generator=g(0))
    # xi is tiny, so the direction is the gradient at z whatever the random start: sample 1 alone,
    # with another start, gives the same direction as inside the batch.
    alone = vat_direction(z[1:2], dec, target[1:2], xi=1e-6, generator=g(7))
    cos = F.cosine_similarity(full[1].flatten(), alone[0].flatten(), dim=0)
    assert cos > 0.99


def test_l2_normalize_per_sample_is_safe() -> None:
    from cct_perturb import l2_normalize_per_sample

    x = torch.randn(4, 3, 5, 5) * 1e-30  # far below 1e-8: an additive epsilon would swamp it
    x[1] = 0
    x[2, 0, 0, 0] = float("nan")
    x[3] *= 1e35
    out = l2_normalize_per_sample(x)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.flatten(1).norm(dim=1), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    fallback = torch.randn(4, 3, 5, 5)
    out = l2_normalize_per_sample(x, fallback)
    assert torch.allclose(out.flatten(1).norm(dim=1), torch.ones(4))
    assert torch.allclose(out[1], fallback[1] / fallback[1].norm())
