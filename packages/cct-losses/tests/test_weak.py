"""Weak-label loss: auxiliary decoders against pseudo-labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cct_losses import WeakLabelLoss, weak_label_loss

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]


def reference(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> float:
    logits = logits.detach().double().cpu()
    b_, c_, h_, w_ = logits.shape
    total, n = 0.0, 0
    for b in range(b_):
        for i in range(h_):
            for j in range(w_):
                y = int(labels[b, i, j])
                if y == ignore_index:
                    continue
                scores = [float(logits[b, c, i, j]) for c in range(c_)]
                mx = max(scores)
                lse = mx + math.log(sum(math.exp(s - mx) for s in scores))
                total += lse - scores[y]
                n += 1
    return total / n if n else 0.0


def _data(seed: int = 0, b: int = 2, c: int = 4, h: int = 3, w: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    labels = torch.randint(0, c, (b, h, w), generator=g)
    labels[torch.rand(b, h, w, generator=g) < 0.3] = 255
    return logits, labels


def test_matches_direct_formula() -> None:
    logits, labels = _data(0)
    assert weak_label_loss(logits, labels).item() == pytest.approx(reference(logits, labels), abs=1e-6)
    torch.testing.assert_close(
        weak_label_loss(logits, labels), F.cross_entropy(logits, labels, ignore_index=255)
    )


def test_averaged_over_decoders_list_vs_tensor() -> None:
    a, labels = _data(1)
    b, _ = _data(2)
    torch.testing.assert_close(weak_label_loss([a], labels), weak_label_loss(a, labels))
    expected = 0.5 * (reference(a, labels) + reference(b, labels))
    assert weak_label_loss((a, b), labels).item() == pytest.approx(expected, abs=1e-6)


def test_logits_are_resized_to_the_labels() -> None:
    logits, _ = _data(3, h=3, w=4)
    _, labels = _data(4, h=6, w=8)
    up = F.interpolate(logits, size=(6, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(weak_label_loss(logits, labels), F.cross_entropy(up, labels, ignore_index=255))


def test_weight_and_custom_ignore() -> None:
    logits, labels = _data(5)
    labels[labels == 255] = -1
    weight = torch.tensor([0.2, 1.0, 3.0, 0.5])
    expected = F.cross_entropy(logits, labels, weight=weight, ignore_index=-1)
    torch.testing.assert_close(weak_label_loss(logits, labels, ignore_index=-1, weight=weight), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_all_ignored_is_zero_with_grad(device: str) -> None:
    logits = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    labels = torch.full((2, 4, 4), 255, dtype=torch.long, device=device)
    loss = weak_label_loss([logits, logits], labels)
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes_and_devices(device: str, dtype: torch.dtype) -> None:
    logits, labels = _data(6)
    logits = logits.to(device=device, dtype=dtype).requires_grad_(True)
    loss = weak_label_loss(logits, labels.to(device))
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert loss.item() == pytest.approx(reference(logits, labels), abs=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_bf16_autocast() -> None:
    logits, labels = _data(7)
    conv = torch.nn.Conv2d(4, 4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(logits)
        loss = weak_label_loss(out, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference(out, labels), abs=1e-5)


def test_module_and_validation() -> None:
    logits, labels = _data(8)
    torch.testing.assert_close(WeakLabelLoss()(logits, labels), weak_label_loss(logits, labels))
    with pytest.raises(ValueError, match="pseudo_labels"):
        weak_label_loss(logits, labels.float())
    with pytest.raises(ValueError, match="aux_logits"):
        weak_label_loss(logits[0], labels)
    with pytest.raises(ValueError, match="aux_logits"):
        weak_label_loss([], labels)
    with pytest.raises(ValueError, match="weight"):
        weak_label_loss(logits, labels, weight=torch.ones(2))
