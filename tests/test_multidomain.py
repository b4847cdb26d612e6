"""Multi-domain CCT (paper 3.4): shared encoder, per-domain heads, config, trainer, eval / predict / export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.common.checkpoint import load_checkpoint
from cct_train.config import ConfigError, config_from_dict, load_config, save_config
from cct_train.engine.trainer import Trainer
from cct_train.eval.inference import evaluate_checkpoint, export_model, load_model
from cct_train.models.cct import CCTModel
from cct_train.models.multidomain import MultiDomainCCT

runner = CliRunner()

HEADS = {
    "a": {"num_classes": 4, "perturbations": {"feature_noise": 1, "guided_cutout": 1, "vat": 1}},
    "b": {"num_classes": 2, "perturbations": {"feature_drop": 2}, "background": [0]},
}


def _model(**kwargs: Any) -> MultiDomainCCT:
    torch.manual_seed(0)
    return MultiDomainCCT("timm:resnet18", HEADS, psp_channels=16, **kwargs)


def _batch(classes: int, n: int = 2, size: tuple[int, int] = (32, 32), seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randn(n, 3, *size, generator=g),
        "targets": torch.randint(0, classes, (n, *size), generator=g),
        "unlabeled": torch.randn(n, 3, *size, generator=g),
        "consistency_weight": 2.0,
    }


# ----------------------------------------------------------------------------------------------- model


def test_shared_encoder_and_separate_heads() -> None:
    model = _model()
    assert model.domain_names == ["a", "b"]
    assert model.head("a").num_aux_decoders == 3
    assert model.head("b").num_aux_decoders == 2
    # The encoder and PSP exist once: no head holds backbone weights of its own.
    keys = list(model.state_dict())
    assert not any(k.startswith("heads.") and (".backbone." in k or ".psp." in k) for k in keys)
    assert any(k.startswith("encoder.") for k in keys)
    assert any(k.startswith("psp.") for k in keys)
    x = torch.randn(2, 3, 32, 32)
    assert model(x, domain="a").shape == (2, 4, 32, 32)
    assert model(x, domain="b").shape == (2, 2, 32, 32)
    with pytest.raises(KeyError, match="unknown domain 'c'"):
        model(x, domain="c")


def test_one_domain_step_trains_the_encoder_and_that_domain_only() -> None:
    model = _model()
    out = model(batches={"b": _batch(2)})
    out["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.heads["b"].parameters())
    assert all(p.grad is None for p in model.heads["a"].parameters())
    assert set(out) >= {"loss", "loss_sup", "loss_unsup", "b/loss_sup", "b/loss_unsup"}
    assert not any(k.startswith("a/") for k in out)


def test_mixed_step_is_the_weighted_sum_of_the_domains() -> None:
    model = _model()
    model.eval()  # BatchNorm from running statistics: each domain's loss is independent of the others
    batches = {"a": {**_batch(4, seed=1), "loss_weight": 0.5}, "b": _batch(2, seed=2)}
    gen = torch.Generator().manual_seed(3)
    both = model(batches=batches, generator=gen)
    alone = {}
    for name in ("a", "b"):
        gen = torch.Generator().manual_seed(3)
        alone[name] = model(batches={name: batches[name]}, generator=gen)
    # Domain b draws after domain a in the mixed step, so compare its deterministic part (Ls) and a's loss.
    assert torch.allclose(both["a/loss"], alone["a"]["a/loss"], atol=1e-6)
    assert torch.allclose(both["b/loss_sup"], alone["b"]["b/loss_sup"], atol=1e-6)
    assert torch.allclose(both["loss"], 0.5 * both["a/loss"] + both["b/loss"], atol=1e-6)
    assert torch.allclose(both["loss_sup"], both["a/loss_sup"] + both["b/loss_sup"], atol=1e-6)


def test_one_encoder_pass_when_shapes_match() -> None:
    calls: list[int] = []
    model = _model()
    model.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    model(batches={"a": _batch(4), "b": _batch(2)})
    assert calls == [8]  # 2 + 2 (a) + 2 + 2 (b) in one batch
    calls.clear()
    model(batches={"a": _batch(4), "b": _batch(2, size=(32, 48))})
    assert sorted(calls) == [4, 4]


def test_main_decoder_gets_no_gradient_from_the_unlabeled_loss() -> None:
    model = _model()
    batch = {**_batch(2), "targets": torch.full((2, 32, 32), 255)}  # all void: Ls = 0
    out = model(batches={"b": batch})
    out["loss"].backward()
    assert out["b/loss_unsup"] > 0
    main = model.heads["b"].main_decoder
    assert all(p.grad is None or not p.grad.any() for p in main.parameters())


def test_export_domain_predicts_exactly_like_the_joint_model(tmp_path: Path) -> None:
    model = _model().eval()
    x = torch.randn(2, 3, 32, 32)
    single = model.export_domain("a").eval()
    assert isinstance(single, CCTModel)
    assert single.num_classes == 4
    assert single.num_aux_decoders == 3
    assert torch.allclose(single(x), model(x, domain="a"))
    rebuilt = MultiDomainCCT.from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x, domain="b"), model(x, domain="b"))


def test_bad_inputs_are_named() -> None:
    model = _model()
    with pytest.raises(ValueError, match="unknown keys"):
        model(batches={"a": {**_batch(4), "labels": 1}})
    with pytest.raises(KeyError, match="unknown domain"):
        model(batches={"zzz": _batch(4)})
    with pytest.raises(ValueError, match="num_classes is required"):
        MultiDomainCCT("timm:resnet18", {"a": {}}, psp_channels=16)


# ----------------------------------------------------------------------------------------------- config


def test_config_domains_views_and_overrides(
    synthetic_root: Path, synthetic_root_b: Path, tmp_path: Path, tiny_two_domain_config: Callable[..., Any]
) -> None:
    raw = tiny_two_domain_config(synthetic_root, synthetic_root_b, tmp_path / "run")
    path = tmp_path / "two.yaml"
    save_config(config_from_dict(raw), path)
    cfg = load_config(path, ["domains.shapes.data.batch_size=3", "domains.0.loss_weight=2"])
    assert cfg.multi_domain
    assert [d.name for d in cfg.domains] == ["scenes", "shapes"]
    views = dict(cfg.domain_views())
    assert views["shapes"].data.batch_size == 3
    assert views["scenes"].data.batch_size == 2
    assert views["shapes"].model.perturbations == {"feature_noise": 1, "guided_cutout": 1}
    assert views["scenes"].model.perturbations == cfg.model.perturbations
    assert views["shapes"].train.unsupervised_weight.lambda_u == 10.0
    assert views["scenes"].train.unsupervised_weight.lambda_u == cfg.train.unsupervised_weight.lambda_u
    assert cfg.domains[0].loss_weight == 2
    with pytest.raises(ConfigError, match="no entry 'nope'"):
        load_config(path, ["domains.nope.data.batch_size=3"])
    with pytest.raises(ConfigError, match=r"domains\.1\.data\.trian"):
        load_config(path, ["domains.1.data.trian=3"])
    with pytest.raises(ConfigError, match="either data"):
        config_from_dict({**raw, "data": raw["domains"][0]["data"]})
    with pytest.raises(ConfigError, match="unique"):
        config_from_dict({**raw, "domains": [raw["domains"][0], raw["domains"][0]]})


# ----------------------------------------------------------------------------------------------- trainer


def _png_folder(root: Path, folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image in sorted((root / "images").glob("*"))[:n]:
        Image.open(image).save(folder / image.name)
    return folder


@pytest.mark.parametrize("sampling", ["alternate", "mix"])
def test_two_domain_training_resumes_evaluates_and_exports(
    sampling: str,
    synthetic_root: Path,
    synthetic_root_b: Path,
    tmp_path: Path,
    tiny_two_domain_config: Callable[..., Any],
) -> None:
    raw = tiny_two_domain_config(
        synthetic_root,
        synthetic_root_b,
        tmp_path / "run",
        iterations=4,
        eval_every=4,
        domain_sampling=sampling,
    )
    trainer = Trainer(config_from_dict(raw), quiet=True)
    result = trainer.fit()
    assert set(result.metrics["domains"]) == {"scenes", "shapes"}
    per_domain = [result.metrics["domains"][n]["miou"] for n in ("scenes", "shapes")]
    assert result.metrics["miou"] == pytest.approx(sum(per_domain) / 2)
    assert len(result.metrics["domains"]["shapes"]["per_class_iou"]) == 3
    csv = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    assert "shapes/loss_sup" in csv
    assert "val/scenes/miou" in csv

    # Resume from the step-2 checkpoint: exactly the weights of the uninterrupted run.
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    assert set(state["streams"]) == {
        "scenes/labeled",
        "scenes/unlabeled",
        "shapes/labeled",
        "shapes/unlabeled",
    }
    assert state["num_classes"] == {"scenes": 6, "shapes": 3}
    final = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    second = {**raw, "experiment": {**raw["experiment"], "output_dir": str(tmp_path / "r2")}}
    partial = Trainer(config_from_dict(second), quiet=True)
    partial.config.train.__dict__["iterations"] = 2  # stop half-way; the schedules still span 4 steps
    partial.fit()
    resumed = Trainer(config_from_dict(second), quiet=True)
    resumed.resume(tmp_path / "r2" / "checkpoints" / "last.pt")
    assert resumed.step == 2
    resumed.fit()
    for key, value in resumed.unwrapped.state_dict().items():
        assert torch.equal(value, final[key]), key

    # Evaluation per domain, from the checkpoint alone.
    scores = evaluate_checkpoint(ckpt, device="cpu")
    assert scores["miou"] == pytest.approx(result.metrics["miou"], abs=1e-6)
    only = evaluate_checkpoint(ckpt, device="cpu", domain="shapes")
    assert only["miou"] == pytest.approx(result.metrics["domains"]["shapes"]["miou"], abs=1e-6)

    # A single-domain model exported from the joint checkpoint evaluates like the joint model's domain.
    exported = export_model(ckpt, tmp_path / "shapes.safetensors", domain="shapes")
    loaded = load_model(exported)
    assert loaded.model.num_classes == 3
    assert loaded.domain is None
    cfg_path = tmp_path / "shapes.yaml"
    save_config(dict(config_from_dict(raw).domain_views())["shapes"], cfg_path)
    again = evaluate_checkpoint(exported, config_path=cfg_path, device="cpu")
    assert again["miou"] == pytest.approx(only["miou"], abs=1e-6)


def test_cli_eval_predict_export_with_domains(
    synthetic_root: Path, synthetic_root_b: Path, tmp_path: Path, tiny_two_domain_config: Callable[..., Any]
) -> None:
    raw = tiny_two_domain_config(
        synthetic_root, synthetic_root_b, tmp_path / "run", iterations=2, eval_every=0
    )
    cfg_path = tmp_path / "two.yaml"
    save_config(config_from_dict(raw), cfg_path)
    result = runner.invoke(app, ["train", "--dry-run", "-c", str(cfg_path)])
    assert result.exit_code == 0, result.output
    assert "[shapes] classes" in result.output
    assert "[scenes] train split" in result.output
    result = runner.invoke(app, ["data", "check", "-c", str(cfg_path), "--quick"])
    assert result.exit_code == 0, result.output
    assert "domain shapes" in result.output
    result = runner.invoke(app, ["train", "-c", str(cfg_path), "--set", "train.log_every=2"])
    assert result.exit_code == 0, result.output
    assert "mean mIoU over domains" in result.output
    # Logged every 2 steps while the domains alternate: both domains' latest losses are in the log.
    csv = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    assert "scenes/loss_sup" in csv
    assert "shapes/loss_sup" in csv
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"

    result = runner.invoke(app, ["eval", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert "[scenes]" in result.output
    assert "[shapes]" in result.output
    moved = ["--set", f"domains.shapes.data.root={synthetic_root_b}"]  # overrides address the domains
    result = runner.invoke(app, ["eval", str(ckpt), "--domain", "shapes", *moved])
    assert result.exit_code == 0
    assert "[scenes]" not in result.output

    images = _png_folder(synthetic_root_b, tmp_path / "inputs")
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "pred")])
    assert result.exit_code == 2
    assert "--domain" in result.output
    result = runner.invoke(
        app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "pred"), "--domain", "shapes"]
    )
    assert result.exit_code == 0, result.output
    masks = [
        np.asarray(Image.open(p))
        for p in sorted((tmp_path / "pred").glob("*.png"))
        if "overlay" not in p.name
    ]
    assert masks
    assert all(m.max() < 3 for m in masks)
    result = runner.invoke(
        app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "p2"), "--domain", "cars"]
    )
    assert result.exit_code == 2
    assert "scenes" in result.output

    out = tmp_path / "scenes.safetensors"
    result = runner.invoke(app, ["export", str(ckpt), "-o", str(out), "--domain", "scenes"])
    assert result.exit_code == 0, result.output
    assert load_model(out).model.num_classes == 6
    whole = tmp_path / "joint.safetensors"
    assert runner.invoke(app, ["export", str(ckpt), "-o", str(whole)]).exit_code == 0
    assert load_model(whole, domain="shapes").model.num_classes == 3


@pytest.mark.parametrize("mode", ["supervised", "cct"])
def test_one_domain_list_trains_exactly_like_the_single_domain_model(
    mode: str, synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., Any]
) -> None:
    """The multi-domain path adds nothing of its own: a `domains` list with one entry gives bit-identical
    weights to the plain single-domain run (same initialisation order, batches, perturbations, steps)."""
    single = tiny_config(synthetic_root, tmp_path / "single", iterations=3, eval_every=0, mode=mode)
    multi = tiny_config(synthetic_root, tmp_path / "multi", iterations=3, eval_every=0, mode=mode)
    multi["domains"] = [{"name": "scenes", "data": multi.pop("data")}]
    plain = Trainer(config_from_dict(single), quiet=True)
    plain.fit()
    joint = Trainer(config_from_dict(multi), quiet=True)
    joint.fit()
    reference = plain.unwrapped.state_dict()
    state = joint.unwrapped.state_dict()
    assert len(state) == len(reference)
    for key, value in state.items():
        assert torch.equal(value, reference[key.replace("heads.scenes.", "")]), key


def test_abce_threshold_is_logged_per_domain_from_its_own_label_space(
    synthetic_root: Path,
    synthetic_root_b: Path,
    tmp_path: Path,
    tiny_two_domain_config: Callable[..., Any],
) -> None:
    raw = tiny_two_domain_config(
        synthetic_root, synthetic_root_b, tmp_path / "run", iterations=2, supervised_loss="abce"
    )
    trainer = Trainer(config_from_dict(raw), quiet=True)
    trainer.fit()
    rows = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    first = {row.split(",")[1]: float(row.split(",")[2]) for row in rows[1:] if row.startswith("1,")}
    # eta starts at 1/C of each domain's classes: 6 for scenes, 3 for shapes.
    assert first["scenes/ce_threshold"] == pytest.approx(trainer.domains[0].ce_threshold(1))
    assert first["shapes/ce_threshold"] == pytest.approx(trainer.domains[1].ce_threshold(1))
    assert first["shapes/ce_threshold"] > first["scenes/ce_threshold"]
