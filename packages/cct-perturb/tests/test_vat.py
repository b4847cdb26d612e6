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
    m = VAT(xi=1e-6, eps=2.0, iterations=2, target="main")
    assert VAT.inputs == "decoder"
    assert torch.equal(m(z, dec, target, generator=g(0)), a)
    own = vat(z, dec, iterations=2, generator=g(0))
    assert torch.equal(own, vat(z, dec, iterations=2, generator=g(0)))
    assert torch.allclose(_norms(own, z), torch.full((2,), 2.0), rtol=1e-5)
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


# ----------------------------------------------------------------- the paper's VAT: the decoder's own target


def _own_kl(dec: nn.Module, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(dec(z)) || softmax(dec(features))), float64."""
    with torch.no_grad():
        p = F.softmax(dec(z).double(), 1)
        log_q = F.log_softmax(dec(features).double(), 1)
        return (p * (p.log() - log_q)).sum(1).flatten(1).sum(1)


def test_default_target_is_the_decoders_own_prediction() -> None:
    """target=None maximises the decoder's OWN KL: more than random directions and the main-target one.

    Measured on this decoder (eps 0.05-0.5): one power iteration raises the own KL 4.6-12x more than the
    best of 5 random directions; against the main-target direction it is better on the batch but not on
    every sample (0.8-1.7x), with 3 iterations (closer to the top eigenvector) on every sample (1.1-2.5x).
    """
    dec = _decoder(seed=3)
    z = torch.randn(4, 8, 6, 6, generator=g(0)).relu()
    main = torch.randn(4, 5, 12, 12, generator=g(1)) * 3
    eps = 0.05
    own = _own_kl(dec, z, vat(z, dec, eps=eps, generator=g(2)))
    by_main = _own_kl(dec, z, vat(z, dec, main, eps=eps, generator=g(2)))
    assert own.sum() > 1.1 * by_main.sum(), (own, by_main)
    for seed in range(5):
        rnd = torch.rand(z.shape, generator=g(10 + seed)) - 0.5
        rnd = rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
        assert torch.all(own > 3 * _own_kl(dec, z, z + rnd))
    own3 = _own_kl(dec, z, vat(z, dec, eps=eps, iterations=3, generator=g(2)))
    main3 = _own_kl(dec, z, vat(z, dec, main, eps=eps, iterations=3, generator=g(2)))
    assert torch.all(own3 > main3), (own3, main3)
    assert torch.all(own3 > own)  # more power iterations: closer to the most damaging direction
    # and it is a different direction from the main-target one
    d_own = vat_direction(z, dec, generator=g(2))
    d_main = vat_direction(z, dec, main, generator=g(2))
    assert F.cosine_similarity(d_own.flatten(1), d_main.flatten(1)).abs().max() < 0.7


def _f64_direction(dec: nn.Module, z: torch.Tensor, xi: float, seed: int) -> torch.Tensor:
    """The paper's power iteration as written (finite difference, own target), in float64."""
    dec = dec.double()
    z64 = z.double()
    d = torch.rand(z.shape, generator=g(seed), dtype=torch.float32).double() - 0.5
    d = (d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).requires_grad_()
    with torch.no_grad():
        q = F.softmax(dec(z64), 1)
    (grad,) = torch.autograd.grad(-(q * F.log_softmax(dec(z64 + xi * d), 1)).sum(), d)
    dec.float()
    return grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def test_limit_equals_the_float64_power_iteration() -> None:
    """xi = 1e-6 in float32: the default computes what the float64 finite difference finds."""
    dec = _decoder(d=16, c=6, seed=4)
    z = torch.randn(2, 16, 5, 5, generator=g(0)).relu() * 3
    ref = _f64_direction(dec, z, 1e-6, seed=1)
    got = vat_direction(z, dec, generator=g(1))  # auto -> limit
    assert F.cosine_similarity(got.double().flatten(1), ref.flatten(1)).min() > 0.999
    limit = vat_direction(z, dec, method="limit", generator=g(1))
    assert torch.equal(limit, got)
    # a resolvable step with the finite difference agrees too
    fd = vat_direction(z, dec, xi=1e-2, generator=g(1))
    assert F.cosine_similarity(fd.double().flatten(1), ref.flatten(1)).min() > 0.99
    with pytest.raises(ValueError, match="own target"):
        vat_direction(z, dec, torch.randn(2, 6, 10, 10), method="limit")
    with pytest.raises(ValueError, match="method"):
        vat(z, dec, method="exact")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["limit", "finite_difference"])
def test_own_target_contract(method: str) -> None:
    """Own target: exact eps, constant r_adv, z's graph kept, every .grad left as it was."""
    encoder = nn.Conv2d(3, 8, 3, padding=1)
    dec = _decoder()
    dec[0].weight.grad = torch.full_like(dec[0].weight, 0.5)
    before = {n: (None if p.grad is None else p.grad.clone()) for n, p in dec.named_parameters()}
    z = encoder(torch.randn(3, 3, 6, 6))
    out = vat(z, dec, eps=1.5, xi=1e-6 if method == "limit" else 1e-2, method=method, generator=g(0))  # type: ignore[arg-type]
    assert torch.allclose(_norms(out, z), torch.full((3,), 1.5), rtol=1e-5)
    for n, p in dec.named_parameters():
        assert (p.grad is None) if before[n] is None else torch.equal(p.grad, before[n]), n
    assert encoder.weight.grad is None
    out.sum().backward()
    assert torch.all(encoder.bias.grad == 3 * 36)  # d(out)/d(z) is the identity: r_adv is a constant
    for n, p in dec.named_parameters():
        assert (p.grad is None) if before[n] is None else torch.equal(p.grad, before[n]), n


def test_module_target_option() -> None:
    dec = _decoder()
    z = torch.randn(2, 8, 6, 6)
    main = torch.randn(2, 5, 12, 12)
    default = VAT()
    assert default.target == "decoder"
    standard = vat(z, dec, generator=g(0))
    # the main logits a generic caller passes are not used by the default (standard VAT) module
    assert torch.equal(default(z, dec, main, generator=g(0)), standard)
    assert torch.equal(default(z, dec, generator=g(0)), standard)
    by_main = VAT(target="main")
    assert torch.equal(by_main(z, dec, main, generator=g(0)), vat(z, dec, main, generator=g(0)))
    with pytest.raises(ValueError, match="main decoder's logits"):
        by_main(z, dec)
    with pytest.raises(ValueError, match="'decoder'"):
        VAT(target="own")  # type: ignore[arg-type]
    assert "target='decoder'" in repr(default)


@pytest.mark.parametrize("target_kind", ["own", "main"])
def test_batchnorm_running_stats_not_advanced(target_kind: str) -> None:
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 5, 1)).train()
    z = torch.randn(4, 8, 6, 6)
    main = None if target_kind == "own" else torch.randn(4, 5, 6, 6)
    state = {k: v.clone() for k, v in dec.state_dict().items()}
    out = vat(z, dec, main, generator=g(0))
    for k, v in dec.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert dec.training
    assert dec[1].training
    assert torch.allclose(_norms(out, z), torch.full((4,), 2.0), rtol=1e-5)


def test_inside_inference_mode() -> None:
    dec = _decoder()
    with torch.inference_mode():
        z = torch.randn(2, 8, 6, 6)
        out = vat(z, dec, generator=g(0))
        out_main = vat(z, dec, torch.randn(2, 5, 12, 12), generator=g(0))
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-5)
    assert torch.allclose(_norms(out_main, z), torch.full((2,), 2.0), rtol=1e-5)
    assert torch.equal(out, vat(z.clone(), dec, generator=g(0)))


def test_bfloat16_rounding_and_out_dtype() -> None:
    """z + r_adv rounded to bf16 loses part of the direction; out_dtype=float32 keeps it exactly."""
    dec = _decoder().to(torch.bfloat16)
    z = (torch.randn(2, 8, 6, 6, generator=g(0)) * 4).to(torch.bfloat16)
    d = vat_direction(z, dec, generator=g(1))
    kept = vat(z, dec, out_dtype=torch.float32, generator=g(1))
    assert kept.dtype == torch.float32
    torch.testing.assert_close(kept - z.float(), 2.0 * d, rtol=0, atol=1e-6)
    rounded = vat(z, dec, generator=g(1))
    assert rounded.dtype == torch.bfloat16
    cos = F.cosine_similarity((rounded.float() - z.float()).flatten(1), d.flatten(1))
    assert torch.all(cos < 0.999)  # the rounding the README warns about
    m = VAT(out_dtype=torch.float32)
    assert m(z, dec, generator=g(1)).dtype == torch.float32


def test_autocast_bfloat16_own_target() -> None:
    encoder = nn.Conv2d(3, 8, 1)
    dec = _decoder()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(torch.randn(2, 3, 6, 6))
        out = vat(z, dec, generator=g(0))
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    assert torch.allclose(_norms(out, z), torch.full((2,), 2.0), rtol=1e-2)
    out.float().sum().backward()
    assert all(p.grad is None for p in dec.parameters())


def test_argument_checks_name_what_is_expected() -> None:
    dec = _decoder()
    z = torch.randn(2, 8, 6, 6)
    main = torch.randn(2, 5, 12, 12)
    with pytest.raises(TypeError, match=r"`decoder` must be a callable .*shape \(2, 5, 12, 12\)"):
        vat(z, main, dec)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`target` must be None .* got Sequential"):
        vat(z, dec, dec)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"logits \(B, C, H, W\).*shape \(2, 12, 12\)"):
        vat(z, dec, main.argmax(1).float())
    with pytest.raises(TypeError, match="generator="):
        vat(z, dec, None, torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, D, h, w\)"):
        vat(z[0], dec)


def test_the_limit_method_shows_no_warning_of_torch_internals() -> None:
    """Forward-mode AD's first use makes torch script its decompositions, which warns (torch >= 2.10) about
    torch's own code; a fresh process turns every FutureWarning into an error."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from cct_perturb import vat_direction\n"
        "z = torch.randn(2, 8, 5, 5)\n"
        "d = vat_direction(z, torch.nn.Conv2d(8, 4, 1), method='limit')\n"
        "assert d.shape == z.shape\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
