"""End-to-end: train CCT and the baseline for a few iterations, resume, evaluate, predict (CPU)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.common.checkpoint import load_checkpoint
from cct_train.config import config_from_dict, save_config
from cct_train.engine.trainer import Trainer
from cct_train.eval.inference import evaluate_checkpoint, load_model

runner = CliRunner()


def test_train_resume_eval_predict(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    cfg = config_from_dict(tiny_config(synthetic_root, tmp_path / "run"))
    trainer = Trainer(cfg, quiet=True)
    assert trainer.unwrapped.num_aux_decoders == 7
    before = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    result = trainer.fit()
    assert result.step == 4
    assert 0.0 <= result.metrics["miou"] <= 1.0
    after = trainer.unwrapped.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 4
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()

    # Resume with a longer schedule: continues from step 4, not from 0.
    longer = config_from_dict(tiny_config(synthetic_root, tmp_path / "run", iterations=6))
    resumed = Trainer(longer, quiet=True)
    resumed.resume(last)
    assert resumed.step == 4
    assert resumed.fit().step == 6

    scores = evaluate_checkpoint(last)
    assert set(scores) >= {"miou", "pixel_accuracy", "per_class_iou"}
    assert len(scores["per_class_iou"]) == trainer.data.num_classes

    out = tmp_path / "pred"
    run = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "run" / "model.safetensors"),
            str(synthetic_root / "images"),
            "-o",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    masks = sorted(p for p in out.glob("*.png") if not p.stem.endswith("_overlay"))
    assert len(masks) == 20
    assert len(list(out.glob("*_overlay.png"))) == 20


def test_supervised_baseline_has_no_aux_decoders(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    cfg = config_from_dict(tiny_config(synthetic_root, tmp_path / "sup", mode="supervised", iterations=2))
    trainer = Trainer(cfg, quiet=True)
    assert trainer.unwrapped.num_aux_decoders == 0
    assert trainer.unlabeled_loader is None
    assert trainer.fit().step == 2


def test_rampup_in_iterations_and_cosine_schedule(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "ramp", iterations=2)
    raw["train"]["unsupervised_weight"] = {"rampup": 3, "schedule": "cosine", "lambda_u": 2.0}
    raw["data"]["check"] = "off"
    trainer = Trainer(config_from_dict(raw), quiet=True)  # both used to raise at construction
    assert trainer.consistency_weight.rampup_iters == 3
    assert trainer.consistency_weight(0) == 0.0
    assert trainer.consistency_weight(3) == 2.0
    assert trainer.fit().step == 2


def test_warmup_and_linear_decoders_from_the_config(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    """train.optimizer.warmup ramps the lr linearly before the poly decay; model.decoder_hidden_relu
    reaches every decoder of the trained model."""
    raw = tiny_config(
        synthetic_root,
        tmp_path / "wu",
        iterations=8,
        optimizer={"lr": 0.01, "warmup": 4, "poly_power": 1.0},
    )
    raw["model"]["decoder_hidden_relu"] = False
    trainer = Trainer(config_from_dict(raw), quiet=True)
    factors = [trainer.scheduler.lr_lambdas[0](it) for it in range(8)]
    expected = [min(1.0, (it + 1) / 4) * (1 - it / 8) for it in range(8)]
    assert factors == pytest.approx(expected)
    assert factors[0] == pytest.approx(0.25)
    assert max(factors) == pytest.approx(factors[3])
    decoders = [trainer.unwrapped.main_decoder, *trainer.unwrapped.aux_decoders]
    assert all(isinstance(b.relu, torch.nn.Identity) for d in decoders for b in d.blocks)
    assert trainer.fit().step == 8
    # A fraction of training: 0.25 of 8 iterations is 2 steps.
    frac = config_from_dict(
        tiny_config(synthetic_root, tmp_path / "wu2", iterations=8, optimizer={"warmup": 0.25})
    )
    assert frac.train.optimizer.warmup_steps(8) == 2


def test_cli_train_eval_and_bad_config(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    save_config(config_from_dict(tiny_config(synthetic_root, tmp_path / "cli", iterations=2)), cfg_path)
    run = runner.invoke(app, ["train", "-c", str(cfg_path), "--set", "train.checkpoint_every=1"])
    assert run.exit_code == 0, run.output
    assert "mIoU" in run.output
    out_json = tmp_path / "scores.json"
    run = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "cli" / "checkpoints" / "last.pt"),
            "--json",
            str(out_json),
            "--flip",
            "--scales",
            "0.75,1",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "miou" in json.loads(out_json.read_text())
    run = runner.invoke(app, ["train", "-c", str(cfg_path), "--set", "train.iteratons=3"])
    assert run.exit_code == 2
    assert "train.iteratons" in run.output


def test_cli_splits(camvid_root: Path, tmp_path: Path) -> None:
    run = runner.invoke(
        app, ["splits", str(camvid_root), "-n", "20", "-o", str(tmp_path / "s"), "--seed", "3"]
    )
    assert run.exit_code == 0, run.output
    labeled = (tmp_path / "s" / "labeled.txt").read_text().split()
    unlabeled = (tmp_path / "s" / "unlabeled.txt").read_text().split()
    assert len(labeled) == 20
    assert len(unlabeled) == 347
    assert not set(labeled) & set(unlabeled)
    again = runner.invoke(
        app, ["splits", str(camvid_root), "-n", "20", "-o", str(tmp_path / "t"), "--seed", "3"]
    )
    assert again.exit_code == 0
    assert (tmp_path / "t" / "labeled.txt").read_text().split() == labeled


@pytest.mark.data
@pytest.mark.parametrize("encoder", ["timm:resnet18", "smp:resnet18"])
def test_camvid_few_iterations(
    camvid_root: Path, tmp_path: Path, encoder: str, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    """A handful of real CamVid images at low resolution: train, checkpoint, resume, evaluate, predict."""
    names = sorted(p.stem for p in (camvid_root / "train").glob("*.png"))
    (tmp_path / "labeled.txt").write_text("\n".join(names[:4]))
    (tmp_path / "unlabeled.txt").write_text("\n".join(names[4:8]))
    data = {
        "dataset": "camvid",
        "root": str(camvid_root),
        "split": {
            "labeled_list": str(tmp_path / "labeled.txt"),
            "unlabeled_list": str(tmp_path / "unlabeled.txt"),
        },
        "resize": [48, 64],
        "crop_size": [48, 64],
        "scale_range": [1.0, 1.5],
        "batch_size": 2,
        "val_batch_size": 16,
        "num_workers": 0,
        "check": "quick",  # the full decode of all 468 CamVid files is `cct data check`'s test
    }
    raw = tiny_config(camvid_root, tmp_path / "run", iterations=2)
    raw["data"] = data
    raw["model"]["encoder"] = encoder
    raw["model"]["background"] = [0, 1, 3, 4, 5]
    trainer = Trainer(config_from_dict(raw), quiet=True)
    assert trainer.data.num_classes == 11
    result = trainer.fit()
    assert result.step == 2
    assert 0.0 <= result.metrics["miou"] <= 1.0
    loaded = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert loaded.class_names[0].lower() == "sky"
    out = tmp_path / "pred"
    run = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "run" / "checkpoints" / "last.pt"),
            str(camvid_root / "val"),
            "-o",
            str(out),
            "--size",
            "48x64",
            "--no-overlay",
        ],
    )
    assert run.exit_code == 0, run.output
    assert len(list(out.glob("*.png"))) == 101


def test_bf16_accumulation_abce_adamw_and_trackers(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(
        synthetic_root,
        tmp_path / "amp",
        iterations=4,
        mixed_precision="bf16",
        gradient_accumulation=2,
        supervised_loss="abce",
        trackers=["csv", "tensorboard"],
        optimizer={"name": "adamw", "lr": 1e-3},
        max_grad_norm=1.0,
    )
    trainer = Trainer(config_from_dict(raw), quiet=True)
    assert trainer.ce_threshold(0) == pytest.approx(1 / trainer.data.num_classes)
    assert trainer.ce_threshold(4) > trainer.ce_threshold(1)
    result = trainer.fit()
    assert result.step == 4
    assert all(torch.isfinite(p).all() for p in trainer.unwrapped.parameters())
    logs = tmp_path / "amp" / "logs"
    assert any(logs.rglob("events.out.tfevents.*")), "TensorBoard wrote no event file"
    rows = (logs / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,key,value"
    assert any(",loss_unsup," in row for row in rows)
    eta = [float(row.split(",")[2]) for row in rows if ",ce_threshold," in row]
    assert eta, "no ce_threshold in the logs"
    assert eta[-1] == pytest.approx(trainer.ce_threshold(4))


def test_cct_and_supervised_runs_of_a_seed_see_the_same_labeled_crops(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    """The labeled augmentation has its own generator: the unlabeled batches and the perturbations of a
    CCT run draw from another, so CCT and its supervised baseline are compared on identical labeled
    batches (issue #15: the paired gain is the effect of the unlabeled data, not of other crops)."""

    def labeled_inputs(mode: str) -> list[torch.Tensor]:
        raw = tiny_config(synthetic_root, tmp_path / mode, mode=mode, iterations=3, checkpoint_every=0)
        raw["data"]["check"] = "off"
        trainer = Trainer(config_from_dict(raw), quiet=True)
        seen: list[torch.Tensor] = []
        inputs = trainer._inputs

        def recording(*args: Any) -> Any:
            out = inputs(*args)
            seen.append(out.images.clone())
            return out

        trainer._inputs = recording  # type: ignore[method-assign]
        trainer.fit()
        return seen

    cct, sup = labeled_inputs("cct"), labeled_inputs("supervised")
    assert len(cct) == len(sup) == 3
    for a, b in zip(cct, sup, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(cct[0], cct[1])  # the crops do change from step to step


def test_resume_restores_both_generators(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "gen", iterations=2)
    raw["data"]["check"] = "off"
    trainer = Trainer(config_from_dict(raw), quiet=True)
    trainer.fit()
    resumed = Trainer(config_from_dict(raw), quiet=True)
    resumed.resume(tmp_path / "gen" / "checkpoints" / "last.pt")
    assert torch.equal(resumed.labeled_generator.get_state(), trainer.labeled_generator.get_state())
    assert torch.equal(resumed.generator.get_state(), trainer.generator.get_state())
    assert not torch.equal(resumed.generator.get_state(), resumed.labeled_generator.get_state())
    # A checkpoint from before the split (one generator state per rank) still resumes.
    resumed._restore_generators([trainer.labeled_generator.get_state()])
    assert torch.equal(resumed.labeled_generator.get_state(), trainer.labeled_generator.get_state())


def test_precise_bn_reestimates_the_statistics_and_leaves_the_weights(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    """train.precise_bn: after the last step the BatchNorm statistics are re-estimated over training
    batches; the weights, and so the training streams, are those of the same run without it, and the
    reported scores are those of the exported weights."""

    def run(name: str, precise_bn: int) -> tuple[Trainer, dict[str, Any]]:
        raw = tiny_config(
            synthetic_root, tmp_path / name, iterations=3, checkpoint_every=0, precise_bn=precise_bn
        )
        raw["data"]["check"] = "off"
        trainer = Trainer(config_from_dict(raw), quiet=True)
        return trainer, trainer.fit().metrics

    plain, _ = run("plain", 0)
    precise, metrics = run("precise", 6)
    plain_state, precise_state = plain.unwrapped.state_dict(), precise.unwrapped.state_dict()
    stats = [k for k in plain_state if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key, value in plain_state.items():
        if key in stats or key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(precise_state[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.allclose(precise_state[k], plain_state[k]) for k in stats)
    exported = load_model(tmp_path / "precise" / "model.safetensors")
    for key in stats:
        torch.testing.assert_close(exported.model.state_dict()[key], precise_state[key])
    scores = evaluate_checkpoint(
        tmp_path / "precise" / "model.safetensors", config_path=tmp_path / "precise" / "config.yaml"
    )
    assert scores["miou"] == pytest.approx(metrics["miou"], abs=1e-6)
