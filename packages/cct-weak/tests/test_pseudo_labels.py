from __future__ import annotations

import pytest
import torch

from cct_weak import cams_to_pseudo_labels

IGN = 255


def hand_made() -> torch.Tensor:
    # 1 image, 3 channels (0 = background, its values are never read), 2 x 4 pixels.
    cams = torch.zeros(1, 3, 2, 4)
    cams[0, 0] = 0.9  # background channel: must be ignored
    # pixel columns: (all < 0.05) | (class 1 = 0.8) | (class 2 = 0.5 > class 1 = 0.4) | (max 0.2: unsure)
    cams[0, 1] = torch.tensor([[0.01, 0.8, 0.4, 0.2], [0.04, 0.31, 0.0, 0.05]])
    cams[0, 2] = torch.tensor([[0.02, 0.1, 0.5, 0.1], [0.0, 0.0, 0.30, 0.0]])
    return cams


def test_thresholds_with_background_channel() -> None:
    out = cams_to_pseudo_labels(hand_made())
    want = torch.tensor([[[0, 1, 2, IGN], [0, 1, IGN, IGN]]])
    assert out.dtype == torch.int64
    torch.testing.assert_close(out, want)


def test_absent_classes_never_appear() -> None:
    labels = torch.tensor([[0, 1, 0]])  # class 2 absent (background not consulted)
    out = cams_to_pseudo_labels(hand_made(), labels)
    # class 2 dropped: (0,2) has class 1 = 0.4 -> 1; (1,2) has class 1 = 0.0 -> background.
    want = torch.tensor([[[0, 1, 1, IGN], [0, 1, 0, IGN]]])
    torch.testing.assert_close(out, want)
    none = cams_to_pseudo_labels(hand_made(), torch.tensor([[1, 0, 0]]))
    assert set(none.unique().tolist()) == {0}


def test_without_background_class() -> None:
    cams = hand_made()[:, 1:]  # 2 foreground classes, no background
    out = cams_to_pseudo_labels(cams, background_index=None)
    want = torch.tensor([[[IGN, 0, 1, IGN], [IGN, 0, IGN, IGN]]])
    torch.testing.assert_close(out, want)


def test_background_index_elsewhere_and_unbatched() -> None:
    cams = hand_made()[0].roll(-1, dims=0)  # channels: class1, class2, background -> bg index 2
    out = cams_to_pseudo_labels(cams, torch.tensor([1, 1, 0]), background_index=2, ignore_index=-1)
    torch.testing.assert_close(out, torch.tensor([[2, 0, 1, -1], [2, 0, -1, -1]]))


def test_random_cams_only_present_classes_and_rules() -> None:
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(4, 5, 8, 8, generator=g) ** 3
    labels = (torch.rand(4, 5, generator=g) > 0.5).float()
    out = cams_to_pseudo_labels(cams, labels, theta_bg=0.1, theta_fg=0.4)
    for i in range(4):
        allowed = {0, IGN} | {c for c in range(1, 5) if labels[i, c] > 0}
        assert set(out[i].unique().tolist()) <= allowed
    fg = cams[:, 1:] * (labels[:, 1:] > 0)[:, :, None, None]
    top = fg.amax(1)
    assert bool((out[top < 0.1] == 0).all())
    assert bool((out[top > 0.4] >= 1).all())
    mid = (top >= 0.1) & (top <= 0.4)
    assert bool((out[mid] == IGN).all())


def test_validation() -> None:
    cams = hand_made()
    with pytest.raises(ValueError):
        cams_to_pseudo_labels(cams, theta_bg=0.5, theta_fg=0.3)
    with pytest.raises(ValueError):
        cams_to_pseudo_labels(cams, ignore_index=1)
    with pytest.raises(ValueError):
        cams_to_pseudo_labels(cams, background_index=3)
    with pytest.raises(ValueError):
        cams_to_pseudo_labels(cams, torch.ones(1, 2))
