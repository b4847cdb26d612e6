"""Issue 42, the config's names: checkpoints written with the keys of cct-train 0.3 still load for
`cct eval`, `cct predict` and `--resume` (their stored config is translated; user input with an old key is
refused, naming the new one), and `data.ignore_index` reaches the model's supervised loss and evaluation."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from cct_losses import ab_ce_loss
from cct_train.cli import app
from cct_train.common.checkpoint import load_checkpoint, save_checkpoint
from cct_train.config import ConfigError, config_from_dict
from cct_train.data import Normalize
from cct_train.engine.trainer import Trainer
from cct_train.eval import evaluate as evaluate_module
from cct_train.eval.evaluate import prepare_images
from cct_train.eval.inference import evaluate_checkpoint, export_model, load_model
from cct_train.models.factory import build_model
from cct_train.models.multidomain import MultiDomainCCT

runner = CliRunner()


def _as_written_by_0_3(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the keys cct-train 0.3 wrote, spelled out here (not made by the code under test)."""
    old = copy.deepcopy(config)
    model, train = old["model"], old["train"]
    model["consistency"] = model.pop("consistency_loss")
    model["confidence"] = model.pop("consistency_confidence")
    weight = train.pop("unsupervised_weight")
    train["consistency"] = {
        "weight": weight["lambda_u"],
        "rampup": weight["rampup"],
        "schedule": weight["schedule"],
    }
    for domain in old.get("domains", []):
        domain["consistency_weight"] = domain.pop("lambda_u")
    return old


def _rewrite(checkpoint: Path, change: Callable[[dict[str, Any]], None]) -> None:
    state = load_checkpoint(checkpoint)
    change(state)
    save_checkpoint(checkpoint, {k: v for k, v in state.items() if k not in ("format", "format_version")})


def test_a_checkpoint_with_the_old_keys_loads_for_eval_predict_and_resume(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    def config(iterations: int) -> dict[str, Any]:
        raw = tiny_config(synthetic_root, tmp_path / "run", iterations=iterations)
        raw["model"].update(perturbations={"feature_noise": 1}, consistency_loss="kl")
        raw["train"]["unsupervised_weight"] = {"lambda_u": 5.0, "rampup": 1}
        raw["data"]["check"] = "off"
        return raw

    Trainer(config_from_dict(config(2)), quiet=True).fit()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    expected = evaluate_checkpoint(last)

    def to_old(state: dict[str, Any]) -> None:
        state["config"] = _as_written_by_0_3(state["config"])

    _rewrite(last, to_old)
    stored = load_checkpoint(last)["config"]
    assert stored["model"]["consistency"] == "kl"
    assert stored["train"]["consistency"]["weight"] == 5.0

    # cct eval: the stored config is read with today's names, the scores are those of before.
    assert evaluate_checkpoint(last) == expected
    scores = tmp_path / "scores.json"
    run = runner.invoke(app, ["eval", str(last), "--json", str(scores)])
    assert run.exit_code == 0, run.output
    assert json.loads(scores.read_text())["miou"] == pytest.approx(expected["miou"])
    # cct predict (and cct export)
    loaded = load_model(last)
    assert loaded.config is not None
    assert loaded.config["model"]["consistency_loss"] == "kl"
    assert loaded.config["train"]["unsupervised_weight"]["lambda_u"] == 5.0
    run = runner.invoke(
        app, ["predict", str(last), str(synthetic_root / "images"), "-o", str(tmp_path / "pred")]
    )
    assert run.exit_code == 0, run.output
    assert len(list((tmp_path / "pred").glob("*_overlay.png"))) == 20
    assert load_model(export_model(last, tmp_path / "old.safetensors")).model.consistency == "kl"
    # --resume: a longer run continues from the old checkpoint.
    resumed = Trainer(config_from_dict(config(3)), quiet=True)
    resumed.resume(last)
    assert resumed.step == 2
    assert resumed.fit().step == 3

    # What a user writes is never translated, on top of a stored config either.
    with pytest.raises(
        ConfigError,
        match=r"model\.consistency \(--set model\.consistency=mse\): unknown key; it was renamed model\.consistency_loss",
    ):
        evaluate_checkpoint(last, overrides=["model.consistency=mse"])
    run = runner.invoke(app, ["eval", str(last), "--set", "train.consistency.weight=2"])
    assert run.exit_code != 0
    assert "train.unsupervised_weight" in run.output


def test_a_multi_domain_checkpoint_with_the_old_keys_loads_each_domain(
    synthetic_root: Path,
    synthetic_root_b: Path,
    tmp_path: Path,
    tiny_two_domain_config: Callable[..., dict[str, Any]],
) -> None:
    cfg = config_from_dict(tiny_two_domain_config(synthetic_root, synthetic_root_b, tmp_path / "run"))
    model = build_model(cfg, {"scenes": 6, "shapes": 3})
    model_config = copy.deepcopy(model.config)
    for spec in model_config["domains"].values():
        del spec["ignore_index"]  # cct-train 0.3's heads had none of their own
    path = tmp_path / "multi.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "model_config": model_config,
            "config": _as_written_by_0_3(cfg.to_dict()),
        },
    )
    assert load_checkpoint(path)["config"]["domains"][1]["consistency_weight"] == 10.0
    shapes = load_model(path, domain="shapes")
    assert shapes.config is not None
    assert shapes.config["train"]["unsupervised_weight"]["lambda_u"] == 10.0  # the domain's own lambda_u
    assert shapes.model.ignore_index == 255
    scenes = load_model(path, domain="scenes")
    assert scenes.config is not None
    assert scenes.config["train"]["unsupervised_weight"]["lambda_u"] == 30.0


# -- data.ignore_index ----------------------------------------------------------------------------------

VOID = 254


@pytest.fixture(scope="module")
def void_254_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder data set of 32x32 images, 3 classes in vertical stripes and a horizontal band labelled 254
    (its dataset.json's ignore_index)."""
    root = tmp_path_factory.mktemp("void254")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float64)
    names = [f"s{i}" for i in range(8)]
    for i, name in enumerate(names):
        mask = np.zeros((32, 32), np.uint8)
        mask[:, 11:22], mask[:, 22:] = 1, 2
        image = colours[mask] + rng.normal(0, 20, (32, 32, 3))
        mask[4 * (i % 6) : 4 * (i % 6) + 6] = VOID
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "val.txt").write_text("\n".join(names[6:]) + "\n")
    (root / "dataset.json").write_text(json.dumps({"num_classes": 3, "ignore_index": VOID}))
    return root


def _void_config(root: Path, output: Path, **train: Any) -> dict[str, Any]:
    return {
        "experiment": {"name": "void", "output_dir": str(output), "seed": 0},
        "model": {"encoder": "timm:resnet18", "psp_channels": 16, "perturbations": {"feature_noise": 1}},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "ignore_index": VOID,
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [32, 32],
            "scale_range": [0.75, 1.25],
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
        },
        "train": {"iterations": 2, "eval_every": 0, "checkpoint_every": 2, "log_every": 1, **train},
    }


def test_ignore_index_reaches_the_supervised_losses(void_254_root: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_void_config(void_254_root, tmp_path / "run"))
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    assert model.ignore_index == VOID
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=g)
    targets = torch.randint(0, 3, (2, 32, 32), generator=g)
    targets[:, 8:16] = VOID
    out = model.train()(images, targets)
    assert isinstance(out, dict)
    # CE: the mean over the labelled pixels only (a 254 would not even be a class of the 3 here).
    counted = F.cross_entropy(out["logits"].float(), targets, ignore_index=VOID)
    assert float(out["loss_sup"]) == pytest.approx(float(counted), rel=1e-5)
    everywhere = F.cross_entropy(out["logits"].float(), targets.clamp(max=2))
    assert float(out["loss_sup"]) != pytest.approx(float(everywhere), rel=1e-3)
    # ab-CE alike.
    out = model(images, targets, ce_threshold=0.6)
    assert isinstance(out, dict)
    reference = ab_ce_loss(out["logits"].float(), targets, 0.6, ignore_index=VOID, min_kept=model.min_kept)
    assert float(out["loss_sup"]) == pytest.approx(float(reference), rel=1e-5)
    # Several domains: each head leaves out its own data's void.
    two = _void_config(void_254_root, tmp_path / "two")
    data = two.pop("data")
    two["domains"] = [
        {"name": "a", "data": data},
        {"name": "b", "data": {**data, "ignore_index": 255}},
    ]
    multi = build_model(config_from_dict(two), 3)
    assert isinstance(multi, MultiDomainCCT)
    assert [multi.head(name).ignore_index for name in ("a", "b")] == [VOID, 255]


def test_ignore_index_reaches_evaluation(
    void_254_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pixels labelled 254 count neither in training's validation nor in `cct eval`: the confusion matrix
    is built with the configured ignore index, and the pixel accuracy is that of the other pixels."""
    seen: list[int] = []
    original = evaluate_module.ConfusionMatrix

    def recording(num_classes: int, ignore_index: int = 255) -> Any:
        seen.append(ignore_index)
        return original(num_classes, ignore_index)

    monkeypatch.setattr(evaluate_module, "ConfusionMatrix", recording)
    cfg = config_from_dict(_void_config(void_254_root, tmp_path / "run", supervised_loss="abce"))
    result = Trainer(cfg, quiet=True).fit()  # the data check (full) accepts 254 as the ignore index
    assert seen == [VOID]
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    scores = evaluate_checkpoint(last)
    assert seen == [VOID, VOID]
    assert scores["miou"] == pytest.approx(result.metrics["miou"])

    loaded = load_model(last)
    model = loaded.model.eval()
    right = counted = void = 0
    for name in ("s6", "s7"):
        image = torch.from_numpy(np.array(Image.open(void_254_root / "images" / f"{name}.png"))).permute(
            2, 0, 1
        )
        mask = torch.from_numpy(
            np.array(Image.open(void_254_root / "masks" / f"{name}.png")).astype(np.int64)
        )
        with torch.no_grad():
            pred = model.predict(prepare_images(image[None], Normalize(*model.normalization)))[0].argmax(0)
        keep = mask != VOID
        right += int((pred == mask)[keep].sum())
        counted += int(keep.sum())
        void += int((~keep).sum())
    assert void > 0
    assert scores["pixel_accuracy"] == pytest.approx(right / counted)
