"""Logits meet labels and images at sizes not divisible by the output stride (issue #39, item 4): the
decoders' extra rows and columns are cropped (``fit_logits``), never resized onto the labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cct_losses import weak_label_loss
from cct_train.common.logits import fit_logits, padded_size
from cct_train.eval.evaluate import evaluate, predict_logits
from cct_train.models.cct import CCTModel
from cct_train.models.multidomain import MultiDomainCCT

C = 5
STRIDE = 8


# ------------------------------------------------------------------------------------------ the helper


def test_padded_size() -> None:
    assert padded_size((180, 240), 8) == (184, 240)
    assert padded_size((181, 243), 8) == (184, 248)
    assert padded_size((176, 240), 16) == (176, 240)
    with pytest.raises(ValueError, match="stride"):
        padded_size((8, 8), 0)


def test_fit_logits_crops_the_padding_of_the_last_cell() -> None:
    logits = torch.randn(2, C, 184, 248)
    out = fit_logits(logits, (181, 243), stride=8)
    assert torch.equal(out, logits[..., :181, :243])
    same = torch.randn(2, C, 180, 240)
    assert fit_logits(same, (180, 240), stride=8) is same


@pytest.mark.parametrize(
    ("have", "size", "stride"),
    [
        ((45, 60), (180, 240), 8),  # lower-resolution logits (a stride-4 head): a genuine resize
        ((184, 240), (180, 240), 1),  # stride unknown: a plain resize
        ((32, 32), (28, 28), 14),  # x16 decoder after a ViT/14: not the image's pixel pitch
        ((256, 256), (224, 224), 14),
        ((182, 240), (180, 240), 8),  # larger, but not the padded extent
    ],
)
def test_fit_logits_resizes_genuine_resolution_differences(
    have: tuple[int, int], size: tuple[int, int], stride: int
) -> None:
    logits = torch.randn(1, C, *have)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(fit_logits(logits, size, stride=stride), expected)


def test_fit_logits_rejects_a_map_without_batch() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        fit_logits(torch.zeros(C, 8, 8), (8, 8), stride=8)


# ----------------------------------------------------------------- a perfect model through the real paths


class LabelEncoder(nn.Module):
    """A stride-8 "backbone" that reads the class id written in the image's first channel (value / 255) and
    returns it one-hot, space-to-depth: ``(B, 3, H, W) -> (B, 64 C, ceil(H / 8), ceil(W / 8))``, the padding
    rows and columns holding class 0 (like a real encoder, whose last cell covers ceil(H / 8) * 8 rows).
    With ``PixelShuffle(8)`` as the main decoder the logits are the labels, top-left aligned."""

    out_channels = 64 * C
    output_stride = STRIDE

    def __init__(self) -> None:
        super().__init__()
        self.device_anchor = nn.Parameter(torch.zeros(()))  # evaluate() reads the device off a parameter

    def forward(self, x: Tensor) -> Tensor:
        labels = (x[:, 0] * 255).round().long().clamp(0, C - 1)
        height, width = labels.shape[-2:]
        ph, pw = padded_size((height, width), STRIDE)
        labels = F.pad(labels, (0, pw - width, 0, ph - height))
        one_hot = F.one_hot(labels, C).permute(0, 3, 1, 2).float()
        return F.pixel_unshuffle(one_hot, STRIDE)


def _perfect_model() -> CCTModel:
    model = CCTModel(LabelEncoder(), C, perturbations={}, psp_channels=None)
    model.main_decoder = nn.PixelShuffle(STRIDE)  # type: ignore[assignment]
    return model


def _labels(height: int, width: int, seed: int = 0) -> Tensor:
    """(2, H, W) class ids in horizontal stripes of 3 rows and vertical ones of 5 columns (so that any shift
    or stretch of a row or column changes the class), some pixels void."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, C, (2, height // 3 + 1), generator=g).repeat_interleave(3, dim=1)[:, :height]
    cols = torch.randint(0, C, (2, width // 5 + 1), generator=g).repeat_interleave(5, dim=1)[:, :width]
    labels = (rows[:, :, None] + cols[:, None, :]) % C
    labels[:, ::17, ::13] = 255
    return labels


def _loader(labels: Tensor) -> DataLoader:
    images = torch.zeros(labels.shape[0], 3, *labels.shape[-2:], dtype=torch.uint8)
    images[:, 0] = torch.where(labels == 255, 0, labels).to(torch.uint8)
    samples = [{"image": i, "mask": m} for i, m in zip(images, labels, strict=True)]
    return DataLoader(samples, batch_size=2)


@pytest.mark.parametrize("size", [(180, 240), (181, 243)])
@pytest.mark.parametrize(
    "options",
    [{}, {"flip": True}, {"window": (100, 150), "stride": (60, 70)}],
    ids=["plain", "flip", "window"],
)
def test_a_perfect_prediction_scores_100(size: tuple[int, int], options: dict) -> None:
    """Through ``evaluate`` (and CCTModel.predict): the logits of a model that predicts the labels score 100
    at sizes that are not multiples of the stride (resizing 184 rows onto 180 scored about 85)."""
    scores = evaluate(_perfect_model(), _loader(_labels(*size)), C, **options)
    assert scores.miou == pytest.approx(1.0)
    assert scores.pixel_accuracy == pytest.approx(1.0)


def test_resizing_the_padding_onto_the_labels_would_not_score_100() -> None:
    """The test above can fail: the old path (a bilinear resize of the decoder's logits) misses."""
    labels = _labels(181, 243)
    model = _perfect_model()
    images = torch.zeros(2, 3, 181, 243)
    images[:, 0] = torch.where(labels == 255, 0, labels) / 255
    with torch.no_grad():
        raw = model.main_decoder(model.encode(images))
    assert raw.shape[-2:] == (184, 248)
    squeezed = F.interpolate(raw, size=(181, 243), mode="bilinear", align_corners=False).argmax(1)
    valid = labels != 255
    assert (squeezed[valid] == labels[valid]).float().mean() < 0.95
    assert torch.equal(predict_logits(model, images).argmax(1)[valid], labels[valid])


# ------------------------------------------------------------------- CCTModel, multi-domain, export


class SmallEncoder(nn.Module):
    """Three padded stride-2 convolutions: ``ceil(H / 8)`` rows, as a ResNet's stem and stages give."""

    out_channels = 16
    output_stride = 8

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return out


@pytest.mark.parametrize("size", [(44, 60), (45, 61)])
def test_predict_keeps_the_top_left_rows(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = CCTModel(SmallEncoder(), C, perturbations={}, psp_channels=None).eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        raw = model.main_decoder(model.encode(images))
        out = model(images)
    assert raw.shape[-2:] == padded_size(size, 8) != size
    assert out.shape == (2, C, *size)
    assert torch.equal(out, raw[..., : size[0], : size[1]])


def test_multidomain_predict_keeps_the_top_left_rows() -> None:
    torch.manual_seed(0)
    model = MultiDomainCCT(
        SmallEncoder(), {"a": {"num_classes": 3, "perturbations": {}}}, psp_channels=None
    ).eval()
    images = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        raw = model.head("a").main_decoder(model.encode(images))
        out = model(images, domain="a")
        single = model.export_domain("a").eval()(images)
    assert out.shape == (1, 3, 45, 61)
    assert torch.equal(out, raw[..., :45, :61])
    torch.testing.assert_close(single, out)


def test_exported_model_returns_logits_at_the_input_size(tmp_path: Path) -> None:
    from cct_train.common.checkpoint import export_weights
    from cct_train.eval.inference import load_model

    torch.manual_seed(0)
    model = CCTModel("timm:resnet18", C, perturbations={}, psp_channels=16).eval()
    path = tmp_path / "m.safetensors"
    export_weights(path, model, model.config, None, None)
    loaded = load_model(path).model
    images = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        raw = loaded.main_decoder(loaded.encode(images))
        out = loaded(images)
        expected = model(images)
    assert raw.shape[-2:] == (48, 64)
    assert torch.equal(out, raw[..., :45, :61])
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------------------- training


def test_training_loss_on_a_crop_not_divisible_by_the_stride() -> None:
    """Ls (and the logits for the metrics) use the top-left 45 x 61 of the 48 x 64 logits; Lw the same of
    each auxiliary decoder's output."""
    torch.manual_seed(0)
    model = CCTModel(
        SmallEncoder(), C, perturbations={"feature_noise": 2, "dropout": 1}, psp_channels=None
    ).train()
    images, unlabeled = torch.randn(2, 3, 45, 61), torch.randn(2, 3, 45, 61)
    targets = torch.randint(0, C, (2, 45, 61))
    weak = torch.randint(0, C, (2, 45, 61))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = model(images, targets, unlabeled, weak_targets=weak, weak_weight=0.4, generator=g)
        raw = model.main_decoder(model.encode(images))
        assert raw.shape[-2:] == (48, 64)
        expected = F.cross_entropy(raw[..., :45, :61], targets)
        # Lw: the same perturbations (same generator) through the auxiliary decoders, cropped.
        z_u = model.encode(unlabeled)
        g = torch.Generator().manual_seed(1)
        aux = [
            dec(pert(z_u, generator=g))
            for pert, dec in zip(model.perturbations, model.aux_decoders, strict=True)
        ]
        expected_weak = weak_label_loss([a[..., :45, :61] for a in aux], weak)
    assert out["logits"].shape == (2, C, 45, 61)
    torch.testing.assert_close(out["logits"], raw[..., :45, :61])
    torch.testing.assert_close(out["loss_sup"], expected)
    torch.testing.assert_close(out["loss_weak"], expected_weak)
    squeezed = F.interpolate(raw, size=(45, 61), mode="bilinear", align_corners=False)
    assert not torch.allclose(out["loss_sup"], F.cross_entropy(squeezed, targets))
