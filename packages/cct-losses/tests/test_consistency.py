"""Consistency losses (mse / kl / js), the detached target and the memory-lean softmax MSE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cct_losses import ConsistencyLoss, consistency_loss, resize_probs, softmax_mse_loss

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]
KINDS = ["mse", "kl", "js"]


def _softmax_list(scores: list[float]) -> list[float]:
    mx = max(scores)
    e = [math.exp(s - mx) for s in scores]
    z = sum(e)
    return [v / z for v in e]


def reference(aux: torch.Tensor, main: torch.Tensor, kind: str, confidence: float | None = None) -> float:
    """Loop-based formula for one decoder (same spatial size), independent of the implementation."""
    aux = aux.detach().double().cpu()
    main = main.detach().double().cpu()
    b_, c_, h_, w_ = aux.shape
    total, pixels = 0.0, 0
    for b in range(b_):
        for i in range(h_):
            for j in range(w_):
                p = _softmax_list([float(aux[b, c, i, j]) for c in range(c_)])
                q = _softmax_list([float(main[b, c, i, j]) for c in range(c_)])
                if confidence is not None and max(q) < confidence:
                    continue
                pixels += 1
                if kind == "mse":
                    total += sum((pc - qc) ** 2 for pc, qc in zip(p, q, strict=True))
                elif kind == "kl":
                    total += sum(qc * (math.log(qc) - math.log(pc)) for pc, qc in zip(p, q, strict=True))
                else:
                    m = [(pc + qc) / 2 for pc, qc in zip(p, q, strict=True)]
                    kl_pm = sum(pc * math.log(pc / mc) for pc, mc in zip(p, m, strict=True))
                    kl_qm = sum(qc * math.log(qc / mc) for qc, mc in zip(q, m, strict=True))
                    total += 0.5 * kl_pm + 0.5 * kl_qm
    if pixels == 0:
        return 0.0
    return total / (pixels * c_) if kind == "mse" else total / pixels


def _pair(seed: int = 0, b: int = 2, c: int = 3, h: int = 3, w: int = 4, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g) * scale, torch.randn(b, c, h, w, generator=g) * scale


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_direct_formula(kind: str, memory_efficient: bool, seed: int) -> None:
    aux, main = _pair(seed)
    got = consistency_loss(aux, main, kind, memory_efficient=memory_efficient)
    assert got.dim() == 0
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference(aux, main, kind), abs=1e-6)


def test_mse_is_mean_over_all_elements_like_the_original() -> None:
    aux, main = _pair(2)
    expected = F.mse_loss(F.softmax(aux, dim=1), F.softmax(main, dim=1))
    torch.testing.assert_close(consistency_loss(aux, main, "mse"), expected)
    torch.testing.assert_close(consistency_loss(aux, main, "mse", memory_efficient=False), expected)


def test_kl_matches_torch_kl_div() -> None:
    aux, main = _pair(3)
    b, _, h, w = aux.shape
    expected = F.kl_div(F.log_softmax(aux, 1), F.softmax(main, 1), reduction="sum") / (b * h * w)
    torch.testing.assert_close(consistency_loss(aux, main, "kl"), expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
def test_no_gradient_reaches_main(kind: str, memory_efficient: bool) -> None:
    aux, main = _pair(4)
    aux.requires_grad_(True)
    main.requires_grad_(True)
    loss = consistency_loss([aux, aux * 0.5], main, kind, memory_efficient=memory_efficient)
    loss.backward()
    assert main.grad is None
    assert aux.grad is not None
    assert aux.grad.abs().sum() > 0


def test_main_only_graph_gets_no_gradient() -> None:
    aux, main = _pair(5)
    main.requires_grad_(True)
    loss = consistency_loss(aux, main, "mse")
    assert not loss.requires_grad  # the only input with a graph is the (detached) target


@pytest.mark.parametrize("kind", KINDS)
def test_list_vs_tensor(kind: str) -> None:
    aux, main = _pair(6)
    aux2, _ = _pair(7)
    single = consistency_loss(aux, main, kind)
    torch.testing.assert_close(consistency_loss([aux], main, kind), single)
    torch.testing.assert_close(consistency_loss((aux,), main, kind), single)
    both = consistency_loss([aux, aux2], main, kind)
    expected = 0.5 * (single + consistency_loss(aux2, main, kind))
    torch.testing.assert_close(both, expected)


@pytest.mark.parametrize("bad", ["l1", "MSE", "", None])
def test_unknown_kind_raises(bad) -> None:
    aux, main = _pair(8)
    with pytest.raises(ValueError, match="kind"):
        consistency_loss(aux, main, bad)
    with pytest.raises(ValueError, match="kind"):
        ConsistencyLoss(bad)


def test_other_validation() -> None:
    aux, main = _pair(9)
    with pytest.raises(ValueError, match="reduction"):
        consistency_loss(aux, main, reduction="avg")
    with pytest.raises(ValueError, match="confidence"):
        consistency_loss(aux, main, confidence=1.5)
    with pytest.raises(ValueError, match="resize_to"):
        consistency_loss(aux, main, resize_to="both")
    with pytest.raises(ValueError, match="aux_logits"):
        consistency_loss([], main)
    with pytest.raises(ValueError, match="aux_logits"):
        consistency_loss(aux[:, :2], main)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("confidence", [0.5, 0.8])
def test_confidence_mask_matches_formula(kind: str, memory_efficient: bool, confidence: float) -> None:
    aux, main = _pair(10, h=4, w=4)
    got = consistency_loss(aux, main, kind, confidence=confidence, memory_efficient=memory_efficient)
    assert got.item() == pytest.approx(reference(aux, main, kind, confidence), abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
def test_confidence_keeping_nothing_is_zero_without_nan(kind: str, memory_efficient: bool) -> None:
    aux, main = _pair(11)
    main = main * 0.01  # nearly uniform: max prob ~ 1/3
    aux.requires_grad_(True)
    loss = consistency_loss(aux, main, kind, confidence=0.9, memory_efficient=memory_efficient)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(aux.grad).all()
    assert (aux.grad == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_resize_main_probabilities_to_aux(kind: str) -> None:
    aux, _ = _pair(12, h=3, w=4)
    _, main = _pair(13, h=6, w=8)
    got = consistency_loss(aux, main, kind)
    q = F.avg_pool2d(F.softmax(main, dim=1), 2)  # area downsampling of the probabilities
    aux_d = aux.double()
    p = F.softmax(aux_d, 1)
    q = q.double()
    if kind == "mse":
        expected = ((p - q) ** 2).mean()
    elif kind == "kl":
        expected = (q * (q.log() - p.log())).sum(1).mean()
    else:
        m = (p + q) / 2
        expected = (0.5 * (p * (p / m).log() + q * (q / m).log())).sum(1).mean()
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)


def test_resize_to_main_upsamples_aux_logits() -> None:
    aux, _ = _pair(14, h=3, w=4)
    _, main = _pair(15, h=6, w=8)
    got = consistency_loss(aux, main, "mse", resize_to="main")
    up = F.interpolate(aux, size=(6, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, F.mse_loss(F.softmax(up, 1), F.softmax(main, 1)))


def test_resize_probs_stays_a_distribution() -> None:
    probs = F.softmax(torch.randn(2, 5, 9, 7), dim=1)
    for size in [(3, 3), (9, 7), (18, 20), (4, 10)]:
        out = resize_probs(probs, size)
        assert out.shape == (2, 5, *size)
        torch.testing.assert_close(out.sum(1), torch.ones(2, *size))
        assert (out >= 0).all()


def test_mixed_sizes_in_list() -> None:
    aux_small, _ = _pair(16, h=3, w=4)
    aux_full, main = _pair(17, h=6, w=8)
    got = consistency_loss([aux_small, aux_full], main, "js")
    expected = 0.5 * (consistency_loss(aux_small, main, "js") + consistency_loss(aux_full, main, "js"))
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="none"):
        consistency_loss([aux_small, aux_full], main, "js", reduction="none")


@pytest.mark.parametrize("kind", KINDS)
def test_reductions(kind: str) -> None:
    aux, main = _pair(18)
    b, c, h, w = aux.shape
    mean = consistency_loss(aux, main, kind)
    none = consistency_loss(aux, main, kind, reduction="none")
    total = consistency_loss(aux, main, kind, reduction="sum")
    assert none.shape == (b, h, w)
    torch.testing.assert_close(none.mean(), mean)
    n = b * c * h * w if kind == "mse" else b * h * w
    torch.testing.assert_close(total, mean * n)
    pair = consistency_loss([aux, aux], main, kind, reduction="none")
    torch.testing.assert_close(pair, none)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_dtypes_and_devices(device: str, dtype: torch.dtype, kind: str) -> None:
    aux, main = _pair(19)
    aux = aux.to(device=device, dtype=dtype).requires_grad_(True)
    main = main.to(device=device, dtype=dtype)
    loss = consistency_loss([aux, aux], main, kind)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert loss.device.type == device
    assert loss.item() == pytest.approx(reference(aux, main, kind), abs=1e-5)
    loss.backward()
    assert aux.grad.dtype == dtype
    assert torch.isfinite(aux.grad.float()).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
def test_bf16_autocast(kind: str, memory_efficient: bool) -> None:
    aux_in, main_in = _pair(20)
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aux = conv(aux_in)
        main = conv(main_in)
        assert aux.dtype == torch.bfloat16
        loss = consistency_loss(aux, main, kind, memory_efficient=memory_efficient)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference(aux, main, kind), abs=1e-5)
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()


def test_module_equals_function() -> None:
    aux, main = _pair(21)
    for kind in KINDS:
        mod = ConsistencyLoss(kind, confidence=0.4)
        expected = consistency_loss([aux, aux * 2], main, kind, confidence=0.4)
        torch.testing.assert_close(mod([aux, aux * 2], main), expected)
    assert "kind='js'" in repr(ConsistencyLoss("js"))


# --- the memory-lean softmax MSE -----------------------------------------------------------------------


def test_softmax_mse_gradcheck() -> None:
    g = torch.Generator().manual_seed(22)
    logits = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    target = F.softmax(torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g), dim=1)
    mask = torch.rand(2, 2, 3, generator=g) > 0.3
    assert torch.autograd.gradcheck(lambda x: softmax_mse_loss(x, target), (logits,))
    assert torch.autograd.gradcheck(lambda x: softmax_mse_loss(x, target, mask=mask), (logits,))
    assert torch.autograd.gradcheck(lambda x: softmax_mse_loss(x, target, reduction="sum"), (logits,))
    assert torch.autograd.gradgradcheck(lambda x: softmax_mse_loss(x, target), (logits,))


def test_softmax_mse_grad_matches_autograd() -> None:
    logits, main = _pair(23, b=3, c=5, h=4, w=4)
    target = F.softmax(main, 1)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    softmax_mse_loss(a, target).backward()
    ((F.softmax(b, 1) - target) ** 2).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_softmax_mse_validation() -> None:
    logits, main = _pair(24)
    with pytest.raises(ValueError, match="reduction"):
        softmax_mse_loss(logits, main, reduction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        softmax_mse_loss(logits, main[:, :2])
    with pytest.raises(ValueError, match="mask"):
        softmax_mse_loss(logits, main, mask=torch.ones(2, 3, 4))


def _saved_bytes(fn) -> int:
    """Bytes of distinct storages kept by autograd for backward while ``fn`` builds its graph."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_efficient_mse_saves_less(dtype: torch.dtype) -> None:
    k, b, c, h, w = 6, 2, 8, 16, 16
    g = torch.Generator().manual_seed(25)
    # Auxiliary logits come out of an op that saves nothing big for backward (like an upsampling).
    leaves = [torch.randn(b, c, h, w, generator=g).requires_grad_(True) for _ in range(k)]
    main = torch.randn(b, c, h, w, generator=g)

    def run(memory_efficient: bool) -> None:
        auxes = [(x * 1.0).to(dtype) for x in leaves]
        consistency_loss(auxes, main.to(dtype), "mse", memory_efficient=memory_efficient)

    lean = _saved_bytes(lambda: run(True))
    plain = _saved_bytes(lambda: run(False))
    per_map = b * c * h * w * 4  # one float32 (B, C, H, W) tensor
    # plain: softmax output + difference, both float32, per decoder
    assert plain >= 2 * k * per_map
    # lean: the logits (in their dtype) per decoder + the one shared target
    itemsize = torch.empty((), dtype=dtype).element_size()
    assert lean <= k * b * c * h * w * itemsize + per_map + 1024
    assert lean < 0.6 * plain


# --- properties ----------------------------------------------------------------------------------------


def _tensors(seed: int, c: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, c, 3, 3, generator=g) * scale, torch.randn(2, c, 3, 3, generator=g) * scale


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(1, 6), scale=st.floats(0.0, 30.0))
def test_properties(seed: int, c: int, scale: float) -> None:
    a, b = _tensors(seed, c, scale)
    mse_ab = consistency_loss(a, b, "mse").item()
    js_ab = consistency_loss(a, b, "js").item()
    kl_ab = consistency_loss(a, b, "kl").item()
    # non-negative and bounded
    assert 0.0 <= mse_ab <= 2.0 / c + 1e-6
    assert -1e-6 <= js_ab <= math.log(2) + 1e-6
    assert kl_ab >= -1e-5
    # symmetric (the detach only matters for gradients)
    assert consistency_loss(b, a, "mse").item() == pytest.approx(mse_ab, abs=1e-6)
    assert consistency_loss(b, a, "js").item() == pytest.approx(js_ab, abs=1e-5)
    # zero on identical inputs
    for kind in KINDS:
        assert consistency_loss(a, a, kind).item() == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 60.0))
def test_extreme_logits_stay_finite(seed: int, scale: float) -> None:
    a, b = _tensors(seed, 4, scale)
    a.requires_grad_(True)
    for kind in KINDS:
        loss = consistency_loss(a, b, kind)
        (grad,) = torch.autograd.grad(loss, a)
        assert torch.isfinite(loss)
        assert torch.isfinite(grad).all()


# --- the per-element definitions (one per kind, shared by every path) ----------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("confidence", [None, 0.6])
def test_pointwise_definitions_reduce_to_the_loss(kind: str, confidence: float | None) -> None:
    """Each kind's per-element map, reduced as documented (mse: mean over all elements; kl / js: summed
    over the classes, mean over the kept pixels), is the loss, and matches the loop formula."""
    from cct_losses import CONSISTENCY_POINTWISE, confidence_mask

    aux, main = _pair(31, b=2, c=4, h=3, w=5)
    q = F.softmax(main, 1)
    elem = CONSISTENCY_POINTWISE[kind](aux, q, 1)
    assert elem.shape == aux.shape
    keep = torch.ones(2, 3, 5, dtype=torch.bool) if confidence is None else confidence_mask(q, confidence)
    assert 0 < int(keep.sum()) < keep.numel() or confidence is None
    per_pixel = elem.mean(1) if kind == "mse" else elem.sum(1)
    expected = per_pixel[keep].mean()
    torch.testing.assert_close(consistency_loss(aux, main, kind, confidence=confidence), expected)
    assert expected.item() == pytest.approx(reference(aux, main, kind, confidence), abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_pointwise_class_dim(kind: str) -> None:
    """``dim`` names the class dimension: (B, C, P) with dim=1 equals channels-last with dim=-1."""
    from cct_losses import CONSISTENCY_POINTWISE

    aux, main = _pair(32, b=2, c=4, h=3, w=5)
    q = F.softmax(main, 1)
    first = CONSISTENCY_POINTWISE[kind](aux, q, 1)
    last = CONSISTENCY_POINTWISE[kind](aux.movedim(1, -1), q.movedim(1, -1), -1)
    torch.testing.assert_close(last, first.movedim(1, -1))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("memory_efficient", [True, False])
def test_an_edit_of_the_definition_reaches_consistency_loss(
    kind: str, memory_efficient: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """consistency_loss (softmax_mse_loss's value included) reads the registry at call time."""
    import cct_losses

    aux, main = _pair(33)
    before = consistency_loss(aux, main, kind, memory_efficient=memory_efficient)
    original = cct_losses.CONSISTENCY_POINTWISE[kind]
    monkeypatch.setitem(cct_losses.CONSISTENCY_POINTWISE, kind, lambda a, q, dim: 3.0 * original(a, q, dim))
    after = consistency_loss(aux, main, kind, memory_efficient=memory_efficient)
    torch.testing.assert_close(after, 3.0 * before)


def test_softmax_mse_grad_is_autograds_of_the_shared_definition() -> None:
    """softmax_mse_loss's hand-written gradient = autograd's gradient of pointwise_mse's mean (masked too)."""
    from cct_losses import pointwise_mse

    logits, main = _pair(34, b=2, c=5, h=4, w=3)
    target = F.softmax(main, 1)
    mask = target.amax(1) >= 0.5
    for m in (None, mask):
        a = logits.double().requires_grad_(True)
        b = logits.double().requires_grad_(True)
        softmax_mse_loss(a, target.double(), mask=m).backward()
        elem = pointwise_mse(b, target.double())
        ref = elem.mean() if m is None else elem[m.unsqueeze(1).expand_as(elem)].mean()
        ref.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)


def test_confidence_mask() -> None:
    from cct_losses import confidence_mask

    q = torch.tensor([[[0.7]], [[0.3]]]).reshape(1, 2, 1, 1)
    assert confidence_mask(q, 0.7).tolist() == [[[True]]]
    assert confidence_mask(q, 0.71).tolist() == [[[False]]]
    assert confidence_mask(q.movedim(1, -1), 0.5, dim=-1).shape == (1, 1, 1)
