from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from cct_weak import CAMClassifier, class_activation_maps, image_labels_from_masks, multilabel_loss


class WithOutChannels(nn.Module):
    out_channels = (3, 5, 7)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_shapes_and_dry_run_inference(make_encoder: Callable[..., nn.Module]) -> None:
    torch.manual_seed(0)
    enc = make_encoder(width=4)
    enc.train()
    model = CAMClassifier(enc, num_classes=5)
    assert model.in_features == 8
    assert enc.training  # the dry run restores the mode
    x = torch.randn(2, 3, 16, 20)
    assert model(x).shape == (2, 5)
    cams = model.cams(x)
    assert cams.shape == (2, 5, 8, 10)
    assert bool((cams >= 0).all())


def test_in_features_from_attribute_and_explicit(make_encoder: Callable[..., nn.Module]) -> None:
    assert CAMClassifier(WithOutChannels(), 3).in_features == 7
    assert CAMClassifier(make_encoder(width=4), 3, in_features=8).in_features == 8
    with pytest.raises(ValueError, match="channels"):
        CAMClassifier(make_encoder(width=4), 3, in_features=9)(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("positive", [True, False])
def test_pooled_cams_equal_logits_minus_bias(positive: bool, make_encoder: Callable[..., nn.Module]) -> None:
    torch.manual_seed(1)
    model = CAMClassifier(make_encoder(width=4, positive=positive), num_classes=4)
    x = torch.randn(3, 3, 12, 12)
    logits = model(x)
    raw = model.cams(x, relu=False)
    torch.testing.assert_close(raw.mean(dim=(2, 3)), logits - model.classifier.bias, atol=1e-5, rtol=1e-5)
    # The 1x1-conv view, with the bias, gives the logits exactly.
    z = model.features(x)
    with_bias = class_activation_maps(z, model.classifier.weight, model.classifier.bias, relu=False)
    torch.testing.assert_close(with_bias.mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-5)


def test_multilabel_loss_matches_bce_and_trains(make_encoder: Callable[..., nn.Module]) -> None:
    torch.manual_seed(2)
    model = CAMClassifier(make_encoder(width=4), num_classes=3)
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
    loss = multilabel_loss(model(x), y)
    ref = nn.BCEWithLogitsLoss()(model(x), y.float())
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert model.classifier.weight.grad is not None
    assert multilabel_loss(model(x), y, reduction="none").shape == (4, 3)
    with pytest.raises(ValueError):
        multilabel_loss(model(x), y[:, :2])


def test_image_labels_from_masks() -> None:
    masks = torch.tensor(
        [
            [[0, 0, 2], [2, 255, 255]],
            [[255, 255, 255], [255, 255, 255]],
            [[1, 1, 1], [1, 3, 0]],
        ]
    )
    got = image_labels_from_masks(masks, num_classes=4)
    want = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(got, want)
    got2 = image_labels_from_masks(masks, num_classes=4, min_pixels=2)
    want2 = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(got2, want2)
    assert image_labels_from_masks(masks[0], 4).shape == (1, 4)
    with pytest.raises(ValueError, match="outside"):
        image_labels_from_masks(masks, num_classes=3)
