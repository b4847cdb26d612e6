"""Encoders: timm / smp sources, output stride, name errors, local and (mocked) online weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cct_train.models.encoders import (
    ENCODER_SOURCES,
    Encoder,
    build_encoder,
    list_encoders,
    load_encoder_weights,
    split_encoder_name,
)

X = torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize(
    ("name", "stride", "channels"),
    [
        ("timm:resnet18", 8, 512),
        ("timm:resnet18", 16, 512),
        ("resnet18", 32, 512),
        ("smp:resnet18", 8, 512),
        ("smp:resnet18", 16, 512),
    ],
)
def test_shapes_and_stride(name: str, stride: int, channels: int) -> None:
    enc = build_encoder(name, output_stride=stride)
    assert isinstance(enc, Encoder)
    assert enc.out_channels == channels
    assert enc.output_stride == stride
    with torch.no_grad():
        out = enc(X)
    assert out.shape == (2, channels, 64 // stride, 64 // stride)
    assert enc.name == (name if ":" in name else f"timm:{name}")


def test_timm_model_without_output_stride_falls_back_to_native() -> None:
    # timm's ViTs take no output_stride argument: native stride 16 with a warning.
    with pytest.warns(UserWarning, match="native stride 16"):
        enc = build_encoder("timm:test_vit", output_stride=8)
    assert enc.output_stride == 16
    with torch.no_grad():
        out = enc(X)
    assert out.shape == (2, enc.out_channels, 4, 4)


def test_smp_encoder_without_dilation_falls_back_to_32() -> None:
    with pytest.warns(UserWarning, match="native stride 32"):
        enc = build_encoder("smp:densenet121", output_stride=8)
    assert enc.output_stride == 32
    with torch.no_grad():
        assert enc(X).shape == (2, enc.out_channels, 2, 2)


def test_in_channels() -> None:
    enc = build_encoder("smp:resnet18", in_channels=1)
    assert enc(torch.randn(2, 1, 32, 32)).shape == (2, 512, 4, 4)


@pytest.mark.parametrize(
    ("name", "suggestion"), [("timm:resnet19", "timm:resnet18"), ("smp:resnet19", "smp:resnet18")]
)
def test_unknown_name_suggests_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=r"Unknown .*resnet19") as info:
        build_encoder(name)
    assert suggestion in str(info.value)


def test_unknown_source_and_bad_stride() -> None:
    with pytest.raises(ValueError, match="source 'foo'"):
        build_encoder("foo:resnet18")
    with pytest.raises(ValueError, match="output_stride"):
        build_encoder("timm:resnet18", output_stride=4)
    assert split_encoder_name("resnet18") == ("timm", "resnet18")


def test_list_encoders() -> None:
    assert set(ENCODER_SOURCES) == {"timm", "smp"}
    assert "timm:resnet18" in list_encoders("timm", pattern="resnet1*")
    smp_names = list_encoders("smp")
    assert "smp:resnet18" in smp_names
    assert all(n.startswith("smp:") for n in smp_names)
    assert "timm:resnet18" in list_encoders(pattern="resnet18")


def _timm_resnet18_state() -> dict[str, torch.Tensor]:
    import timm

    # A full classifier (fc head included), randomly initialised: what a downloaded checkpoint looks like.
    return {k: v.clone() for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}


def _assert_loaded(enc: Encoder, state: dict[str, torch.Tensor]) -> None:
    own = enc.backbone.state_dict()
    assert own, "empty backbone"
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_round_trip(tmp_path: Path, suffix: str) -> None:
    state = _timm_resnet18_state()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    enc = build_encoder("timm:resnet18", weights=path)
    _assert_loaded(enc, state)
    assert set(enc.load_report["unexpected"]) == {"fc.weight", "fc.bias"}
    # A fresh encoder differs (the load did something).
    fresh = build_encoder("timm:resnet18")
    assert not torch.equal(fresh.backbone.state_dict()["conv1.weight"], state["conv1.weight"])


def test_local_weights_prefixes_and_nesting(tmp_path: Path) -> None:
    state = _timm_resnet18_state()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    enc = build_encoder("timm:resnet18", weights=str(path))
    _assert_loaded(enc, state)
    # The same torchvision-style keys fit smp's ResNet encoder.
    enc_smp = build_encoder("smp:resnet18", weights=path)
    _assert_loaded(enc_smp, state)


def test_local_weights_that_do_not_fit(tmp_path: Path) -> None:
    state = _timm_resnet18_state()
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4")}, path)
    with pytest.raises(ValueError, match="missing keys"):
        build_encoder("timm:resnet18", weights=path)
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="No tensor"):
        build_encoder("timm:resnet18", weights=other)
    with pytest.raises(FileNotFoundError):
        build_encoder("timm:resnet18", weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="either"):
        build_encoder("timm:resnet18", weights=path, pretrained=True)


def test_first_conv_adapted_to_in_channels() -> None:
    state = _timm_resnet18_state()
    enc = build_encoder("timm:resnet18", in_channels=1)
    report = load_encoder_weights(enc, state)
    assert report["adapted"] == ["conv1.weight"]
    assert torch.allclose(
        enc.backbone.state_dict()["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True)
    )


def test_pretrained_timm_uses_library_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    real = timm.create_model
    calls: list[dict[str, Any]] = []

    def fake(name: str, **kwargs: Any) -> nn.Module:
        calls.append({"name": name, **kwargs})
        return real(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", fake)
    enc = build_encoder("timm:resnet18", pretrained=True)
    assert calls[-1]["pretrained"] is True
    assert calls[-1]["features_only"] is True
    assert calls[-1]["output_stride"] == 8
    assert enc.output_stride == 8


def test_pretrained_smp_uses_imagenet(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmentation_models_pytorch.encoders as smp_encoders

    real = smp_encoders.get_encoder
    calls: list[dict[str, Any]] = []

    def fake(name: str, **kwargs: Any) -> nn.Module:
        calls.append({"name": name, **kwargs})
        return real(name, **{**kwargs, "weights": None})

    monkeypatch.setattr(smp_encoders, "get_encoder", fake)
    enc = build_encoder("smp:resnet18", pretrained=True, output_stride=16)
    assert calls[-1]["weights"] == "imagenet"
    assert calls[-1]["output_stride"] == 16
    assert enc.output_stride == 16
