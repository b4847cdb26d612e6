"""CONTRIBUTING's "Adding things", done here as a user would: a toy data set (one subclass, one registration)
and a toy perturbation (one function, one module class, one registration), each trained through the public
config (`cct train -c`), and the study's planned runs unchanged by the new perturbation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from typer.testing import CliRunner

from cct_perturb import PERTURBATIONS, Perturbation, PerturbationInputs
from cct_train.cli import app
from cct_train.common.checkpoint import load_checkpoint
from cct_train.config import config_from_dict, save_config
from cct_train.data import DATASETS
from cct_train.data.base import Item, SegmentationDataset, SkippedEntry, split_missing

runner = CliRunner()


# ----------------------------------------------------------------------------- a data set: one file's worth
class ToySquares(SegmentationDataset):
    """``root/<split>/<name>.jpg`` images with ``<name>.png`` masks: 0 background, 1 a square, 7 void."""

    title = "toy squares"
    splits = ("train", "val")
    class_names = ("background", "square")
    void_values = (7,)

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        images = sorted((self.root / str(self.split)).glob("*.jpg"))
        items = [Item(p.stem, p, p.with_suffix(".png")) for p in images]
        return split_missing(items, f"toy {self.split}", self.missing)


# ------------------------------------------------------------------------ a perturbation: one module's worth
def toy_noise(z: Tensor, sigma: float = 0.1, *, generator: torch.Generator | None = None) -> Tensor:
    """Additive Gaussian noise on the features: ``z`` (B, D, h, w) -> ``z + sigma * N(0, 1)``, same shape."""
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return z + sigma * noise


class ToyNoise(Perturbation):
    """Module form of :func:`toy_noise`."""

    inputs: ClassVar[PerturbationInputs] = "features"

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return toy_noise(z, self.sigma, generator=generator)


# ------------------------------------------------------------------------------------------------ helpers
def _write_toy_squares(root: Path, counts: dict[str, int]) -> None:
    """Tiny files: 48x48 images, each with a bright square on its mask as class 1 and a void border."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        (root / split).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 80, (48, 48, 3), dtype=np.uint8)
            mask = np.zeros((48, 48), np.uint8)
            top, left = (int(v) for v in rng.integers(4, 24, 2))
            image[top : top + 16, left : left + 16] += 150
            mask[top : top + 16, left : left + 16] = 1
            mask[0] = 7
            Image.fromarray(image).save(root / split / f"s{i}.jpg")
            Image.fromarray(mask).save(root / split / f"s{i}.png")


def _train(tmp_path: Path, data: dict[str, Any], perturbations: dict[str, int]) -> Path:
    """`cct train -c` on a tiny config: 2 steps of CCT with ``perturbations``; returns the output folder."""
    out = tmp_path / "run"
    raw = {
        "experiment": {"name": "toy", "output_dir": str(out), "seed": 0},
        "model": {"encoder": "timm:resnet18", "psp_channels": 16, "perturbations": perturbations},
        "data": {
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [32, 32],
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
            **data,
        },
        "train": {"iterations": 2, "eval_every": 0, "checkpoint_every": 2, "log_every": 1, "trackers": []},
    }
    path = tmp_path / "toy.yaml"
    save_config(config_from_dict(raw), path)
    result = runner.invoke(app, ["train", "-c", str(path)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def toy_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy data set registered (undone after the test) and its tiny files written."""
    monkeypatch.setitem(DATASETS, "toy", ToySquares)  # the registration
    root = tmp_path / "toy"
    _write_toy_squares(root, {"train": 8, "val": 2})
    return root


@pytest.fixture
def toy_perturbation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PERTURBATIONS, "toy", ToyNoise)  # the registration (undone after the test)


# -------------------------------------------------------------------------------------------------- tests
def test_a_toy_data_set_trains_through_the_config(tmp_path: Path, toy_root: Path) -> None:
    dataset = ToySquares(toy_root, "val")
    assert dataset.names == ["s0", "s1"]
    assert dataset.num_classes == 2
    sample = dataset[0]
    assert sample["image"].shape == (3, 48, 48)
    assert set(sample["mask"].unique().tolist()) == {0, 1, 255}  # 7 on disk is void
    assert (sample["mask"][0] == 255).all()
    out = _train(tmp_path, {"dataset": "toy", "root": str(toy_root)}, {"feature_noise": 1})
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 2
    assert list(checkpoint["class_names"]) == ["background", "square"]
    assert json.loads((out / "metrics.json").read_text())["step"] == 2


@pytest.mark.usefixtures("toy_perturbation")
def test_a_toy_perturbation_trains_and_adds_no_study_run(
    tmp_path: Path, toy_root: Path, tiny_study: Any
) -> None:
    z = torch.ones(2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert toy_noise(z, generator=g).shape == z.shape
    out = _train(tmp_path, {"dataset": "toy", "root": str(toy_root)}, {"toy": 1})
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 2
    assert checkpoint["model_config"]["perturbations"] == {"toy": 1}

    from cct_train.study import DEFAULT_METHODS, known_methods, plan_runs, study_config_from_dict
    from cct_train.study.schema import base_config

    study = study_config_from_dict(tiny_study())
    assert study.methods == list(DEFAULT_METHODS)  # "toy" is registered, not planned
    # ...also when it is registered before the study's names are made (as in cct_perturb/registry.py)
    code = (
        "import cct_perturb; cct_perturb.PERTURBATIONS['toy'] = cct_perturb.FeatureNoise; "
        "from cct_train.study import DEFAULT_METHODS, PERTURBATION_TYPES; "
        "print(len(PERTURBATION_TYPES), 'toy' in DEFAULT_METHODS)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["7", "False"], found.stderr
    assert [s.method for s in plan_runs(study, base_config(study), tmp_path)] == list(DEFAULT_METHODS)
    assert "toy" in known_methods()  # named in methods:, it is studied
    named = study_config_from_dict(tiny_study(methods=["toy", "supervised"]))
    assert named.methods == ["supervised", "toy"]
    assert named.decoders("toy") == {"toy": 2}


class ToyDecoderGuided(Perturbation):
    """A decoder-guided toy (I-VAT's inputs): scales z by the decoder's mean confidence, and records what
    it was handed."""

    inputs: ClassVar[PerturbationInputs] = "decoder"
    seen: ClassVar[list[tuple[str, bool]]] = []

    def forward(
        self,
        z: Tensor,
        decoder: Any,
        target: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        with torch.no_grad():
            logits = decoder(z)
        same_order = target is not None and target.shape == logits.shape
        self.seen.append((type(decoder).__name__, same_order))
        return z * logits.softmax(1).amax(1).mean()


def test_a_decoder_guided_perturbation_is_dispatched_by_its_inputs(
    tmp_path: Path, toy_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the objective hands a perturbation comes from its `inputs`: no isinstance on VAT. With the
    # fused path (the default) it gets its decoder as GEMMs in sub-pixel order, and the main logits in
    # the same order.
    monkeypatch.setitem(PERTURBATIONS, "toy_guided", ToyDecoderGuided)
    monkeypatch.setattr(ToyDecoderGuided, "seen", [])
    _train(tmp_path, {"dataset": "toy", "root": str(toy_root)}, {"toy_guided": 1})
    assert ToyDecoderGuided.seen == [("SubPixelRows", True)] * 2


@pytest.fixture
def tiny_study() -> Any:
    def make(**extra: Any) -> dict[str, Any]:
        base = {
            "model": {"encoder": "timm:resnet18", "psp_channels": 16},
            "data": {"dataset": "folder", "root": "data/x", "crop_size": [32, 32], "num_workers": 0},
            "train": {"iterations": 2, "eval_every": 0, "checkpoint_every": 0, "trackers": []},
        }
        return {"name": "t", "base": base, "n_labeled": [4], "seeds": [0], **extra}

    return make
