"""ab-CE: the bootstrapped cross-entropy and its annealed threshold."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cct_losses import AnnealedBootstrappedCE, ab_ce_loss

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]


def reference_ab_ce(logits, target, threshold, ignore_index=255, min_kept=1, weight=None) -> float:
    """Direct, loop-based formula on tiny tensors (independent of the implementation)."""
    logits = logits.detach().double().cpu()
    target = target.cpu()
    b_, c_ = logits.shape[:2]
    kept: list[tuple[float, float]] = []  # (ce, weight)
    for b in range(b_):
        pixels = []  # (p_true, ce, w)
        for idx in range(target[b].numel()):
            y = int(target[b].reshape(-1)[idx])
            if y == ignore_index:
                continue
            scores = [float(logits[b, c].reshape(-1)[idx]) for c in range(c_)]
            mx = max(scores)
            z = sum(math.exp(s - mx) for s in scores)
            p = math.exp(scores[y] - mx) / z
            ce = -(scores[y] - mx - math.log(z))
            w = 1.0 if weight is None else float(weight[y])
            pixels.append((p, ce, w))
        order = sorted(range(len(pixels)), key=lambda i: pixels[i][0])
        forced = set(order[:min_kept])
        for i, (p, ce, w) in enumerate(pixels):
            if p < threshold or i in forced:
                kept.append((ce, w))
    den = sum(w for _, w in kept)
    return sum(ce * w for ce, w in kept) / den if den > 0 else 0.0


def _data(seed: int = 0, b: int = 2, c: int = 4, h: int = 3, w: int = 5, ignore_frac: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * 2.0
    target = torch.randint(0, c, (b, h, w), generator=g)
    ignore = torch.rand(b, h, w, generator=g) < ignore_frac
    target[ignore] = 255
    return logits, target


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.8, 1.01])
@pytest.mark.parametrize("min_kept", [0, 1, 3, 100])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_direct_formula(threshold: float, min_kept: int, seed: int) -> None:
    logits, target = _data(seed)
    got = ab_ce_loss(logits, target, threshold, min_kept=min_kept)
    assert got.dim() == 0
    assert got.item() == pytest.approx(
        reference_ab_ce(logits, target, threshold, min_kept=min_kept), abs=1e-5
    )


def test_matches_direct_formula_with_weight_and_custom_ignore() -> None:
    logits, target = _data(3, c=3)
    target[target == 255] = -1
    weight = torch.tensor([0.5, 2.0, 1.0])
    got = ab_ce_loss(logits, target, 0.6, ignore_index=-1, min_kept=2, weight=weight)
    ref = reference_ab_ce(logits, target, 0.6, ignore_index=-1, min_kept=2, weight=weight)
    assert got.item() == pytest.approx(ref, abs=1e-5)


def test_threshold_above_one_is_plain_cross_entropy() -> None:
    logits, target = _data(4)
    expected = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(ab_ce_loss(logits, target, 1.5), expected)
    weight = torch.tensor([1.0, 0.3, 2.0, 0.7])
    expected_w = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    torch.testing.assert_close(ab_ce_loss(logits, target, 1.5, weight=weight), expected_w)


def _easy_and_hard_batch():
    """Image 0: every pixel hard (true class improbable); image 1: every pixel very easy."""
    c, h, w = 3, 2, 3
    target = torch.zeros(2, h, w, dtype=torch.long)
    logits = torch.zeros(2, c, h, w)
    logits[0, 1] = 3.0  # image 0 predicts class 1 -> p(class 0) small
    logits[1, 0] = torch.tensor([[8.0, 9.0, 10.0], [11.0, 12.0, 13.0]])  # image 1: p(class 0) ~ 1
    return logits, target


def test_min_kept_is_per_image() -> None:
    logits, target = _easy_and_hard_batch()
    logits.requires_grad_(True)
    loss = ab_ce_loss(logits, target, 0.5, min_kept=2)
    assert loss.item() == pytest.approx(reference_ab_ce(logits, target, 0.5, min_kept=2), abs=1e-6)
    loss.backward()
    # The easy image still contributes exactly its 2 hardest pixels (the two lowest logits of class 0).
    grad_easy = logits.grad[1].abs().sum(dim=0)
    assert (grad_easy > 0).sum().item() == 2
    assert grad_easy[0, 0] > 0
    assert grad_easy[0, 1] > 0
    # And every pixel of the hard image counts.
    assert (logits.grad[0].abs().sum(dim=0) > 0).all()
    # A batch-global min_kept (the original's) would not force anything from the easy image: the
    # loss over the hard image only is different.
    hard_only = F.cross_entropy(logits[:1].detach(), target[:1])
    assert loss.item() != pytest.approx(hard_only.item(), abs=1e-4)


def test_threshold_zero_keeps_exactly_min_kept_per_image() -> None:
    logits, target = _data(5, ignore_frac=0.0)
    logits.requires_grad_(True)
    ab_ce_loss(logits, target, 0.0, min_kept=3).backward()
    per_pixel = logits.grad.abs().sum(dim=1).reshape(2, -1)
    assert ((per_pixel > 0).sum(dim=1) == 3).all()


def test_fewer_valid_pixels_than_min_kept_keeps_all_valid() -> None:
    logits, target = _data(6, h=2, w=2, ignore_frac=0.0)
    target[0] = 255
    target[0, 0, 0] = 1  # image 0: a single valid pixel
    got = ab_ce_loss(logits, target, 0.0, min_kept=50)
    expected = F.cross_entropy(logits, target, ignore_index=255)  # every valid pixel
    torch.testing.assert_close(got, expected)


def test_ignored_pixels_never_count() -> None:
    logits, target = _data(7, ignore_frac=0.4)
    base = ab_ce_loss(logits, target, 0.7, min_kept=100)
    other = logits.clone()
    other[(target == 255).unsqueeze(1).expand_as(other)] = 1e4  # garbage where ignored
    torch.testing.assert_close(ab_ce_loss(other, target, 0.7, min_kept=100), base)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("min_kept", [0, 1, 5])
def test_all_ignored_is_zero_with_grad(device: str, min_kept: int) -> None:
    logits = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    target = torch.full((2, 4, 4), 255, dtype=torch.long, device=device)
    loss = ab_ce_loss(logits, target, 0.9, min_kept=min_kept)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad == 0).all()


def test_nothing_kept_is_zero() -> None:
    logits, target = _data(8)
    logits.requires_grad_(True)
    loss = ab_ce_loss(logits, target, 0.0, min_kept=0)
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()


def test_single_class() -> None:
    logits = torch.randn(2, 1, 3, 3, requires_grad=True)
    target = torch.zeros(2, 3, 3, dtype=torch.long)
    target[0, 0, 0] = 255
    loss = ab_ce_loss(logits, target, 0.5, min_kept=2)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_tensor_threshold_equals_float() -> None:
    logits, target = _data(9)
    a = ab_ce_loss(logits, target, 0.55, min_kept=2)
    b = ab_ce_loss(logits, target, torch.tensor(0.55), min_kept=2)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtypes_and_devices(device: str, dtype: torch.dtype) -> None:
    logits, target = _data(10)
    logits = logits.to(device=device, dtype=dtype).requires_grad_(True)
    target = target.to(device)
    loss = ab_ce_loss(logits, target, 0.6, min_kept=2)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    ref = reference_ab_ce(logits.detach().float(), target, 0.6, min_kept=2)
    assert loss.item() == pytest.approx(ref, abs=1e-4)
    loss.backward()
    assert logits.grad.dtype == dtype
    assert torch.isfinite(logits.grad.float()).all()


def test_bf16_autocast() -> None:
    logits, target = _data(11)
    conv = torch.nn.Conv2d(4, 4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(logits)
        assert out.dtype == torch.bfloat16
        loss = ab_ce_loss(out, target, 0.7)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    ref = reference_ab_ce(out.detach().float(), target, 0.7)
    assert loss.item() == pytest.approx(ref, abs=1e-4)
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()


def test_higher_spatial_rank_and_1d() -> None:
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 3, 7, generator=g)
    target = torch.randint(0, 3, (2, 7), generator=g)
    assert ab_ce_loss(logits, target, 0.4, min_kept=2).item() == pytest.approx(
        reference_ab_ce(logits, target, 0.4, min_kept=2), abs=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_kept": -1}, "min_kept"),
        ({"threshold": torch.tensor([0.1, 0.2])}, "threshold"),
        ({"weight": torch.ones(3)}, "weight"),
    ],
)
def test_ab_ce_validation(kwargs: dict, match: str) -> None:
    logits, target = _data(13)
    args = {"threshold": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        ab_ce_loss(logits, target, **args)


def test_ab_ce_shape_and_dtype_validation() -> None:
    logits, target = _data(14)
    with pytest.raises(ValueError, match="target"):
        ab_ce_loss(logits, target.float(), 0.5)
    with pytest.raises(ValueError, match="target"):
        ab_ce_loss(logits, target[:, :2], 0.5)


# --- AnnealedBootstrappedCE ----------------------------------------------------------------------------


def test_threshold_schedule_log() -> None:
    crit = AnnealedBootstrappedCE(num_classes=4, total_iters=1000)
    assert crit.ramp_iters == pytest.approx(400)
    assert crit.threshold(0) == pytest.approx(0.25)
    mid = 0.25 + (0.9 - 0.25) * (1 - math.exp(-2.5))
    assert crit.threshold(200) == pytest.approx(mid)
    end = 0.25 + (0.9 - 0.25) * (1 - math.exp(-5.0))
    assert crit.threshold(400) == pytest.approx(end)
    assert crit.threshold(999) == pytest.approx(end)
    assert crit.threshold(400) == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize(
    ("schedule", "mid_ramp"),
    [("linear", 0.5), ("sigmoid", math.exp(-1.25)), ("exp", math.exp(-1.25)), ("step", 0.0)],
)
def test_threshold_other_schedules(schedule: str, mid_ramp: float) -> None:
    crit = AnnealedBootstrappedCE(num_classes=2, total_iters=100, ramp_fraction=0.5, schedule=schedule)
    assert crit.threshold(25) == pytest.approx(0.5 + 0.4 * mid_ramp)
    assert crit.threshold(50) == pytest.approx(0.9)
    assert crit.threshold(100) == pytest.approx(0.9)


def test_threshold_is_monotone() -> None:
    crit = AnnealedBootstrappedCE(num_classes=21, total_iters=500)
    values = [crit.threshold(i) for i in range(0, 501, 10)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(1 / 21)


def test_module_forward_equals_function() -> None:
    logits, target = _data(15)
    crit = AnnealedBootstrappedCE(num_classes=4, total_iters=100, min_kept=2)
    for it in [0, 10, 40, 100]:
        expected = ab_ce_loss(logits, target, crit.threshold(it), min_kept=2)
        torch.testing.assert_close(crit(logits, target, it), expected)


def test_module_weight_buffer() -> None:
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])
    crit = AnnealedBootstrappedCE(num_classes=4, total_iters=10, weight=weight)
    assert "weight" in dict(crit.named_buffers())
    logits, target = _data(16)
    expected = ab_ce_loss(logits, target, crit.threshold(3), weight=weight)
    torch.testing.assert_close(crit(logits, target, 3), expected)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"total_iters": 0}, "total_iters"),
        ({"ramp_fraction": 0.0}, "ramp_fraction"),
        ({"ramp_fraction": 1.5}, "ramp_fraction"),
        ({"final_threshold": 1.5}, "final_threshold"),
        ({"final_threshold": 0.0}, "final_threshold"),
        ({"schedule": "cubic"}, "schedule"),
        ({"min_kept": -1}, "min_kept"),
        ({"weight": torch.ones(3)}, "weight"),
    ],
)
def test_module_validation(kwargs: dict, name: str) -> None:
    args = {"num_classes": 4, "total_iters": 100, **kwargs}
    with pytest.raises(ValueError, match=name):
        AnnealedBootstrappedCE(**args)


def test_module_class_mismatch() -> None:
    logits, target = _data(17)
    with pytest.raises(ValueError, match="num_classes"):
        AnnealedBootstrappedCE(num_classes=5, total_iters=10)(logits, target, 0)
