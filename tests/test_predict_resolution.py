"""`cct predict` uses the resolution the model trained at, stored in the checkpoint (issue 41, item 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer
from cct_train.eval import inference


def _train(root: Path, output: Path, tiny_config: Callable[..., dict[str, Any]]) -> Path:
    raw = tiny_config(root, output, iterations=1, checkpoint_every=1, trackers=[])
    raw["data"].update({"resize": [48, 40], "crop_size": [32, 32]})
    raw["model"]["perturbations"] = {"feature_noise": 1}
    Trainer(config_from_dict(raw), quiet=True).fit()
    return output


def _sizes_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    original = inference.predict_logits

    def spy(model: Any, images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        seen.append(tuple(images.shape[-2:]))
        return original(model, images, **kwargs)

    monkeypatch.setattr(inference, "predict_logits", spy)
    return seen


def test_predict_uses_the_stored_training_resolution(
    synthetic_root: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    cct: Callable[..., Any],
) -> None:
    run = _train(synthetic_root, tmp_path / "run", tiny_config)
    images = synthetic_root / "images"
    for weights in (run / "model.safetensors", run / "checkpoints" / "last.pt"):
        assert inference.load_model(weights).input_size == (48, 40)
    exported = tmp_path / "exported.safetensors"
    inference.export_model(run / "checkpoints" / "last.pt", exported)
    assert inference.load_model(exported).input_size == (48, 40)

    seen = _sizes_seen(monkeypatch)
    inference.predict_folder(run / "model.safetensors", images, tmp_path / "a", overlay=False)
    assert set(seen) == {(48, 40)}
    seen.clear()
    inference.predict_folder(run / "model.safetensors", images, tmp_path / "b", resize=None, overlay=False)
    assert set(seen) == {(64, 64)}
    first = sorted((tmp_path / "a").glob("*.png"))[0]
    with Image.open(first) as mask:
        assert mask.size == (64, 64)  # written at the image's own size

    proc = cct(
        "predict", str(run / "model.safetensors"), str(images), "-o", str(tmp_path / "c"), "--no-overlay"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "predicting at 48x40, the training data.resize stored in" in " ".join(proc.stderr.split())
    proc = cct(
        "predict", str(run / "model.safetensors"), str(images), "-o", str(tmp_path / "d"), "--size", "own"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "predicting at" not in proc.stderr


def test_a_model_trained_at_its_images_own_size_predicts_at_theirs(
    synthetic_root: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "run", iterations=1, checkpoint_every=0, trackers=[])
    raw["model"]["perturbations"] = {"feature_noise": 1}
    Trainer(config_from_dict(raw), quiet=True).fit()
    assert inference.load_model(tmp_path / "run" / "model.safetensors").input_size is None
    seen = _sizes_seen(monkeypatch)
    inference.predict_folder(
        tmp_path / "run" / "model.safetensors", synthetic_root / "images", tmp_path / "p", overlay=False
    )
    assert set(seen) == {(64, 64)}
