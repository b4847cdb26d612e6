from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cct_perturb import ContextMask, ObjectMask, class_map, context_mask, object_mask


def _logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels.long(), c).permute(0, 3, 1, 2).float() * 5.0


def _expected_objects(pred: torch.Tensor, size: tuple[int, int], background: tuple[int, ...]) -> torch.Tensor:
    lab = F.interpolate(pred.argmax(1)[:, None].float(), size=size, mode="nearest")[:, 0].long()
    bg = torch.zeros_like(lab, dtype=torch.bool)
    for c in background:
        bg |= lab == c
    return ~bg


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    big=st.sampled_from([(8, 8), (32, 32), (33, 47), (4, 6)]),
    background=st.sampled_from([(0,), (3, 5), (), (1, 2, 4)]),
)
def test_masks_zero_exactly_objects_or_context(
    seed: int, big: tuple[int, int], background: tuple[int, ...]
) -> None:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 3, 8, 8, generator=gen)
    pred = torch.randn(2, 6, *big, generator=gen)
    objects = _expected_objects(pred, (8, 8), background)[:, None]
    om = object_mask(z, pred, background)
    cm = context_mask(z, pred, background)
    assert torch.equal(om, torch.where(objects, torch.zeros_like(z), z))
    assert torch.equal(cm, torch.where(objects, z, torch.zeros_like(z)))
    assert torch.equal(om + cm, z)


def test_background_parameter() -> None:
    labels = torch.tensor([[[0, 3], [5, 2]]])
    pred = _logits(labels, 6)
    z = torch.ones(1, 2, 2, 2)
    out = object_mask(z, pred, background=(3, 5))
    assert out[0, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    out = context_mask(z, pred, background=(3, 5))
    assert out[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # default background is class 0
    assert object_mask(z, pred)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_pred_of_other_size_nearest() -> None:
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, 8:24, 0:16] = 1
    z = torch.randn(1, 4, 8, 8)
    out = context_mask(z, _logits(labels, 2))
    kept = (out != 0).all(1)[0]
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:6, 0:4] = True
    assert torch.equal(kept, expected)
    # smaller prediction than the features (upsampling)
    small = _logits(torch.tensor([[[0, 1], [1, 0]]]), 2)
    out = object_mask(torch.ones(1, 1, 4, 4), small)
    assert out[0, 0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_class_map_matches_argmax_then_resize() -> None:
    pred = torch.randn(3, 21, 80, 80)
    for size in [(10, 10), (40, 40), (13, 17), (80, 80), (160, 100)]:
        ref = F.interpolate(pred.argmax(1)[:, None].float(), size=size, mode="nearest")[:, 0].long()
        assert torch.equal(class_map(pred, size), ref)
    labels = torch.randint(0, 5, (2, 16, 16))
    assert torch.equal(class_map(labels, (16, 16)), labels)


def test_mask_modules_and_class_map_input() -> None:
    labels = torch.randint(0, 4, (2, 16, 16))
    z = torch.randn(2, 3, 8, 8)
    m = ObjectMask(background=(1,))
    assert ObjectMask.inputs == "prediction"
    assert ContextMask.inputs == "prediction"
    assert torch.equal(m(z, _logits(labels, 4)), object_mask(z, labels, (1,)))
    assert torch.equal(ContextMask()(z, _logits(labels, 4)), context_mask(z, labels))


def test_masks_keep_graph_not_through_pred() -> None:
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    pred = torch.randn(2, 3, 8, 8, requires_grad=True)
    (object_mask(z, pred) + context_mask(z, pred)).sum().backward()
    assert z.grad is not None
    assert torch.all(z.grad == 1)
    assert pred.grad is None


def test_batch_mismatch() -> None:
    with pytest.raises(ValueError):
        object_mask(torch.randn(2, 3, 4, 4), torch.randn(3, 2, 4, 4))
