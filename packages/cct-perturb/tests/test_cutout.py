from __future__ import annotations

from collections import deque

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cct_perturb import GuidedCutout, guided_cutout, guided_cutout_mask, label_regions


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels.long(), c).permute(0, 3, 1, 2).float() * 5.0


def _regions(keys: torch.Tensor) -> list[list[list[tuple[int, int]]]]:
    """Reference 8-connected regions of equal non-negative keys, per image (BFS)."""
    out = []
    for image in keys.tolist():
        h, w = len(image), len(image[0])
        seen = [[False] * w for _ in range(h)]
        regions = []
        for y in range(h):
            for x in range(w):
                if image[y][x] < 0 or seen[y][x]:
                    continue
                seen[y][x] = True
                queue, pixels = deque([(y, x)]), []
                while queue:
                    cy, cx = queue.popleft()
                    pixels.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if (
                                0 <= ny < h
                                and 0 <= nx < w
                                and not seen[ny][nx]
                                and image[ny][nx] == image[cy][cx]
                            ):
                                seen[ny][nx] = True
                                queue.append((ny, nx))
                regions.append(pixels)
        out.append(regions)
    return out


def _box(pixels: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    ys = [p[0] for p in pixels]
    xs = [p[1] for p in pixels]
    return min(ys), max(ys), min(xs), max(xs)


def _random_blobs(seed: int, batch: int = 3, c: int = 4, size: int = 24) -> torch.Tensor:
    coarse = torch.rand(batch, c, 5, 5, generator=g(seed))
    coarse[:, 0] += 0.3  # plenty of background
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).argmax(1)


# ---------------------------------------------------------------- region labelling
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_label_regions_matches_bfs(seed: int) -> None:
    labels = _random_blobs(seed)
    keys = torch.where(labels > 0, labels, torch.full_like(labels, -1))
    out = label_regions(keys)
    for b, regions in enumerate(_regions(keys)):
        assert len(out[b][out[b] >= 0].unique()) == len(regions)
        for pixels in regions:
            ids = {out[b, y, x].item() for y, x in pixels}
            assert len(ids) == 1
        assert torch.all(out[b][keys[b] < 0] == -1)
    # labels are unique across the batch (valid segment indices)
    assert torch.all((out < 0) | ((out // (24 * 24)) == torch.arange(3)[:, None, None]))


def test_label_regions_winding_snake() -> None:
    keys = torch.full((1, 40, 40), -1)
    for y in range(0, 40, 2):
        keys[0, y, :] = 1
        if y + 1 < 40:
            keys[0, y + 1, 39 if (y // 2) % 2 == 0 else 0] = 1
    out = label_regions(keys)
    assert len(out[out >= 0].unique()) == 1


# ---------------------------------------------------------------- guided cutout
def test_rectangles_inside_boxes_of_size_erase_squared() -> None:
    labels = torch.zeros(1, 40, 40, dtype=torch.long)
    labels[0, 2:12, 3:13] = 1  # 10 x 10 box -> 4 x 4 rectangle
    labels[0, 20:35, 15:35] = 2  # 15 x 20 box -> 6 x 8 rectangle
    z = torch.ones(1, 3, 40, 40)
    for seed in range(10):
        out = guided_cutout(z, _logits(labels, 3), generator=g(seed))
        erased = (out == 0).all(1)[0]
        assert torch.all((out == 0) == erased)  # all channels alike
        box1 = erased[2:12, 3:13]
        box2 = erased[20:35, 15:35]
        assert erased.sum() == box1.sum() + box2.sum()  # nothing outside the boxes
        assert box1.sum() == 16
        assert box2.sum() == 48
        for box, (rh, rw) in [(box1, (4, 4)), (box2, (6, 8))]:
            ys, xs = torch.nonzero(box, as_tuple=True)
            assert ys.max() - ys.min() + 1 == rh
            assert xs.max() - xs.min() + 1 == rw


def test_positions_are_random_inside_the_box() -> None:
    labels = torch.zeros(1, 20, 20, dtype=torch.long)
    labels[0, 0:10, 0:10] = 1
    corners = set()
    for seed in range(60):
        erased = (guided_cutout(torch.ones(1, 1, 20, 20), _logits(labels, 2), generator=g(seed)) == 0)[0, 0]
        ys, xs = torch.nonzero(erased, as_tuple=True)
        corners.add((ys.min().item(), xs.min().item()))
    assert {c[0] for c in corners} == set(range(7))
    assert {c[1] for c in corners} == set(range(7))


@pytest.mark.filterwarnings("ignore:guided_cutout. a batch with objects got no cut")  # tiny erase
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), erase=st.floats(0.0, 1.0), per_class=st.booleans())
def test_zeroes_only_inside_object_boxes(seed: int, erase: float, per_class: bool) -> None:
    labels = _random_blobs(seed)
    z = torch.randn(3, 2, 24, 24, generator=g(seed)) + 10
    out = guided_cutout(z, _logits(labels, 4), erase, min_region=4, per_class=per_class, generator=g(seed))
    erased = (out == 0).all(1)
    assert torch.equal(erased, (out == 0).any(1))
    keys = torch.where(
        labels > 0, labels if per_class else torch.ones_like(labels), torch.full_like(labels, -1)
    )
    for b, regions in enumerate(_regions(keys)):
        allowed = torch.zeros(24, 24, dtype=torch.bool)
        for pixels in regions:
            y0, y1, x0, x1 = _box(pixels)
            if len(pixels) >= 4:
                allowed[y0 : y1 + 1, x0 : x1 + 1] = True
                rh, rw = int(erase * (y1 - y0 + 1) + 0.5), int(erase * (x1 - x0 + 1) + 0.5)
                # its own rectangle: at least rh * rw erased pixels inside its box
                assert erased[b, y0 : y1 + 1, x0 : x1 + 1].sum() >= rh * rw
        assert not torch.any(erased[b] & ~allowed)


def test_distinct_regions_get_their_own_rectangles() -> None:
    labels = torch.zeros(2, 30, 30, dtype=torch.long)
    boxes = [(0, 0), (0, 20), (20, 0), (20, 20)]
    for y, x in boxes:
        labels[0, y : y + 10, x : x + 10] = 1  # same class, four separate regions
    labels[1, 5:15, 5:15] = 1
    out = guided_cutout(torch.ones(2, 1, 30, 30), _logits(labels, 2), generator=g(0))
    erased = out[:, 0] == 0
    for y, x in boxes:
        assert erased[0, y : y + 10, x : x + 10].sum() == 16
    assert erased[0].sum() == 64
    assert erased[1].sum() == 16
    assert erased[1, 5:15, 5:15].sum() == 16


def test_per_class_vs_binary_for_touching_objects() -> None:
    labels = torch.zeros(1, 30, 30, dtype=torch.long)
    labels[0, 5:15, 5:15] = 1
    labels[0, 5:15, 15:25] = 2  # touches class 1
    pred = _logits(labels, 3)
    z = torch.ones(1, 1, 30, 30)
    per_class = guided_cutout(z, pred, generator=g(0))[0, 0] == 0
    assert per_class[5:15, 5:15].sum() == 16
    assert per_class[5:15, 15:25].sum() == 16
    binary = guided_cutout(z, pred, per_class=False, generator=g(0))[0, 0] == 0
    assert binary.sum() == 4 * 8
    assert binary[5:15, 5:25].sum() == 32


@pytest.mark.filterwarnings("ignore:guided_cutout. a batch with objects got no cut")  # on purpose
def test_tiny_regions_and_no_objects() -> None:
    labels = torch.zeros(1, 20, 20, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1  # 4 pixels
    labels[0, 10:13, 10:13] = 1  # 9 pixels
    z = torch.randn(1, 2, 20, 20)
    pred = _logits(labels, 2)
    assert torch.equal(guided_cutout(z, pred, min_region=10, generator=g(0)), z)
    out = guided_cutout(z, pred, min_region=5, generator=g(0))
    assert (out == 0).all(1)[0].sum() == 1
    assert (out == 0).all(1)[0, 10:13, 10:13].sum() == 1
    only_bg = _logits(torch.zeros(1, 20, 20, dtype=torch.long), 2)
    assert torch.equal(guided_cutout(z, only_bg, generator=g(0)), z)
    # a 2 x 2 region is ignored by the default threshold
    tiny = torch.zeros(1, 20, 20, dtype=torch.long)
    tiny[0, 5:7, 5:7] = 1
    assert torch.equal(guided_cutout(z, _logits(tiny, 2), generator=g(0)), z)


def test_erase_extremes_background_and_pred_size() -> None:
    labels = torch.zeros(1, 80, 80, dtype=torch.long)
    labels[0, 8:48, 16:56] = 3  # at z's 20 x 20: rows 2..11, cols 4..13
    pred = _logits(labels, 4)
    z = torch.ones(1, 1, 20, 20)
    full = guided_cutout(z, pred, erase=1.0, generator=g(0))[0, 0] == 0
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[2:12, 4:14] = True
    assert torch.equal(full, expected)
    assert torch.equal(guided_cutout(z, pred, erase=0.0, generator=g(0)), z)
    assert torch.equal(guided_cutout(z, pred, background=(0, 3), generator=g(0)), z)
    with pytest.raises(ValueError):
        guided_cutout(z, pred, erase=1.5)


def test_mask_function_and_module() -> None:
    labels = _random_blobs(0, batch=2)
    pred = _logits(labels, 4)
    z = torch.randn(2, 3, 24, 24)
    keep = guided_cutout_mask(pred, (24, 24), generator=g(5))
    assert keep.shape == (2, 1, 24, 24)
    assert keep.dtype == torch.bool
    assert torch.equal(guided_cutout(z, pred, generator=g(5)), z * keep)
    m = GuidedCutout(erase=0.4, background=(0,))
    assert GuidedCutout.inputs == "prediction"
    assert torch.equal(m(z, pred, generator=g(5)), guided_cutout(z, pred, generator=g(5)))


def test_compiles_without_graph_breaks() -> None:
    pytest.importorskip("torch._dynamo")
    import torch._dynamo

    labels = _random_blobs(1, batch=2)
    pred = _logits(labels, 4)
    explanation = torch._dynamo.explain(guided_cutout_mask)(pred, (24, 24))
    assert explanation.graph_break_count == 0
