"""Cross-view CCT (issue #39, ``train.unlabeled.views: weak-strong``): the model's step, its gradient
routing, the CutMix mixing of the target, fused = plain, bf16, two domains, the config, and the trainer
(training, logging, exact resume)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cct_train.config import ConfigError, config_from_dict
from cct_train.models.cct import CCTModel
from cct_train.models.multidomain import MultiDomainCCT
from cct_train.objectives.crossview import CrossViewInputs, box_at, strong_view_loss, weak_view_target

image = pytest.importorskip("cct_perturb.image", reason="cross-view CCT needs cct-perturb[image] (kornia)")

C = 3
PERTS = {"feature_noise": 1, "object_mask": 1, "guided_cutout": 1, "vat": 1}


def _model(perturbations: dict[str, int] | None = None, **kwargs: Any) -> CCTModel:
    torch.manual_seed(0)
    kwargs.setdefault("psp_channels", 16)
    return CCTModel(
        "timm:resnet18", C, perturbations=PERTS if perturbations is None else perturbations, **kwargs
    )


def _views(seed: int = 0, size: tuple[int, int] = (64, 64), batch: int = 2) -> dict[str, Tensor]:
    """A labeled batch and the two views of an unlabeled one, CutMix boxes included."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=g)
    targets = torch.randint(0, C, (batch, *size), generator=g)
    weak01 = torch.rand(batch, 3, *size, generator=g)
    strong01 = image.photometric(weak01, generator=g)
    mixed = image.cutmix(strong01, p=1.0, scale=(0.2, 0.4), generator=g)
    return {
        "images": images,
        "targets": targets,
        "unlabeled": (weak01 - 0.5) / 0.25,
        "strong": (mixed.images - 0.5) / 0.25,
        "cutmix_box": mixed.box,
        "cutmix_partner": mixed.partner,
    }


def _grad_norm(module: nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


# ----------------------------------------------------------------------------------------------- objective


def test_strong_view_loss_counts_confident_pixels_over_all_pixels() -> None:
    target = torch.zeros(2, C, 4, 4)
    target[0, 1] = 10.0  # image 0: confident in class 1 everywhere; image 1: uniform
    logits = torch.randn(2, C, 4, 4, requires_grad=True)
    loss, share = strong_view_loss(logits, target, confidence=0.9)
    assert float(share) == 0.5
    expected = torch.nn.functional.cross_entropy(logits[:1], torch.ones(1, 4, 4, dtype=torch.long)) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[1]) == 0  # the unconfident image teaches nothing
    _, every = strong_view_loss(logits, target, confidence=None)
    assert float(every) == 1.0


def test_box_at_the_decoders_grid_pads_the_overhang_with_no_box() -> None:
    box = torch.zeros(1, 6, 5, dtype=torch.bool)
    box[0, 2:, 3:] = True
    padded = box_at(box, (8, 8))
    assert padded.shape == (1, 8, 8)
    assert torch.equal(padded[:, :6, :5], box)
    assert not padded[:, 6:].any()
    assert not padded[:, :, 5:].any()
    assert box_at(box, (6, 5)) is box


def test_target_and_strong_images_are_mixed_with_the_same_boxes() -> None:
    """The weak view's target takes, inside each sample's box, its partner's prediction: exactly where the
    strong image took its partner's pixels."""
    model = _model()
    v = _views(1)
    box, partner = v["cutmix_box"], v["cutmix_partner"]
    assert box.any()
    assert (~box).any()
    with torch.no_grad():
        z_w = model.encode(v["unlabeled"])
        plain = model.main_decoder(z_w)
    target, target_image = weak_view_target(
        model.main_decoder, CrossViewInputs(z_w, (64, 64), box, partner), model.output_stride
    )
    assert target is target_image
    for b in range(2):
        inside = box[b]
        assert torch.equal(target[b][:, inside], plain[partner[b]][:, inside])
        assert torch.equal(target[b][:, ~inside], plain[b][:, ~inside])
    # (The trainer mixes the strong images with these very boxes: test_trainer_cross_view_step.)


@pytest.mark.parametrize("perturbations", [PERTS, {}], ids=["crossview", "fixmatch"])
def test_gradients_go_where_the_design_says(perturbations: dict[str, int]) -> None:
    """The weak view's target carries no graph; the main decoder learns only from Ls and the strong-view CE;
    the encoder and every auxiliary decoder learn from the unlabeled losses."""
    model = _model(perturbations).train()
    v = _views(2)
    void = torch.full_like(v["targets"], 255)  # Ls = 0 and no gradient from the labeled batch
    args = {k: v[k] for k in ("unlabeled", "strong", "cutmix_box", "cutmix_partner")}

    # Without the strong-view CE: the main decoder gets nothing from the unlabeled images.
    out = model(v["images"], void, **args, target_confidence=None, consistency_weight=1.0)
    assert set(out) == {"loss", "loss_sup", "loss_unsup", "loss_weak", "loss_strong", "logits", "confident"}
    assert float(out["loss_strong"]) == 0.0
    assert float(out["confident"]) == 1.0
    if perturbations:
        assert out["loss_unsup"] > 0
        out["loss"].backward()
        assert _grad_norm(model.main_decoder) == 0.0
        assert _grad_norm(model.encoder) > 0
        assert all(_grad_norm(d) > 0 for d in model.aux_decoders)
    else:
        out["loss"].backward()  # nothing learns: the FixMatch-style baseline needs strong_weight
        assert _grad_norm(model) == 0.0
    model.zero_grad(set_to_none=True)

    # With it: the main decoder learns, and the loss is the weighted sum of the terms.
    out = model(v["images"], void, **args, target_confidence=None, consistency_weight=2.0, strong_weight=0.5)
    assert out["loss_strong"] > 0
    torch.testing.assert_close(
        out["loss"].detach(), out["loss_sup"] + 2.0 * out["loss_unsup"] + 0.5 * out["loss_strong"]
    )
    out["loss"].backward()
    assert _grad_norm(model.main_decoder) > 0
    assert _grad_norm(model.encoder) > 0
    model.zero_grad(set_to_none=True)


def test_weak_view_is_encoded_without_a_graph_and_strong_with_one() -> None:
    model = _model({"feature_noise": 1}).train()
    v = _views(3)
    seen: list[tuple[int, bool]] = []
    hook = model.psp.register_forward_hook(lambda m, i, o: seen.append((o.shape[0], o.requires_grad)))
    try:
        model(
            v["images"],
            v["targets"],
            v["unlabeled"],
            strong=v["strong"],
            cutmix_box=v["cutmix_box"],
            cutmix_partner=v["cutmix_partner"],
            strong_weight=1.0,
        )
    finally:
        hook.remove()
    # The weak view first, alone and without a graph; then labeled + strong in one pass with one.
    assert seen == [(2, False), (4, True)]


def _cross_args(v: dict[str, Tensor]) -> dict[str, Any]:
    return {k: v[k] for k in ("unlabeled", "strong", "cutmix_box", "cutmix_partner")}


def test_aux_on_weak_is_the_papers_cct_on_the_weak_view_plus_the_strong_view_loss() -> None:
    """``aux_view: weak``: Lu is exactly the paper's CCT step on the weak view (same draws, same value),
    and the strong-view loss is exactly the one of cross-view CCT with the same views."""
    model = _model(concat_batches=False).train()  # each view encoded alone: the same BatchNorm batches
    v = _views(4)
    common = {"target_confidence": 0.5, "consistency_weight": 1.0}

    def step(**kwargs: Any) -> dict[str, Tensor]:
        return model(
            v["images"], v["targets"], generator=torch.Generator().manual_seed(7), **common, **kwargs
        )

    hybrid = step(**_cross_args(v), strong_weight=1.0, aux_on_weak=True)
    paper = model(v["images"], v["targets"], v["unlabeled"], generator=torch.Generator().manual_seed(7))
    cross = step(**_cross_args(v), strong_weight=1.0)
    torch.testing.assert_close(hybrid["loss_unsup"], paper["loss_unsup"], rtol=0, atol=0)
    torch.testing.assert_close(hybrid["loss_strong"], cross["loss_strong"], rtol=0, atol=0)
    torch.testing.assert_close(hybrid["confident"], cross["confident"], rtol=0, atol=0)
    assert not torch.equal(hybrid["loss_unsup"], cross["loss_unsup"])  # another view, another target
    torch.testing.assert_close(
        hybrid["loss"].detach(), hybrid["loss_sup"] + hybrid["loss_unsup"] + hybrid["loss_strong"]
    )


def test_aux_on_weak_routes_gradients_through_the_weak_view() -> None:
    """The weak view is encoded with a graph; Lu trains the encoder and the auxiliary decoders, never the
    main decoder, which learns from the unlabeled images only through the strong-view loss."""
    model = _model(concat_batches=False).train()
    v = _views(5)
    void = torch.full_like(v["targets"], 255)
    seen: list[tuple[int, bool]] = []
    hook = model.psp.register_forward_hook(lambda m, i, o: seen.append((o.shape[0], o.requires_grad)))
    try:
        out = model(v["images"], void, **_cross_args(v), target_confidence=None, aux_on_weak=True)
    finally:
        hook.remove()
    assert seen == [(2, True), (2, True), (2, True)]  # weak, labeled, strong: all with a graph
    assert float(out["loss_strong"]) == 0.0
    assert out["loss_unsup"] > 0
    out["loss"].backward()
    assert _grad_norm(model.main_decoder) == 0.0
    assert _grad_norm(model.encoder) > 0
    assert all(_grad_norm(d) > 0 for d in model.aux_decoders)
    # Without auxiliary decoders nothing needs the weak view's graph: FixMatch-style, as before.
    fixmatch = _model({}).train()
    seen.clear()
    hook = fixmatch.psp.register_forward_hook(lambda m, i, o: seen.append((o.shape[0], o.requires_grad)))
    try:
        fixmatch(v["images"], void, **_cross_args(v), strong_weight=1.0, aux_on_weak=True)
    finally:
        hook.remove()
    assert seen[0] == (2, False)


def test_fused_and_plain_auxiliary_paths_agree_in_cross_view_mode() -> None:
    model = _model(confidence=None).train()
    v = _views(4)
    args = {k: v[k] for k in ("unlabeled", "strong", "cutmix_box", "cutmix_partner")}
    results = []
    for fused in (True, False):
        model.fuse_aux_decoders = fused
        model.zero_grad(set_to_none=True)
        out = model(
            v["images"],
            v["targets"],
            **args,
            target_confidence=0.4,
            strong_weight=1.0,
            generator=torch.Generator().manual_seed(3),
        )
        out["loss"].backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = results
    assert 0.0 < float(a["confident"]) < 1.0  # the threshold masks part of the target
    torch.testing.assert_close(a["loss_unsup"], b["loss_unsup"])
    torch.testing.assert_close(a["loss"], b["loss"])
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


def test_sizes_that_are_not_multiples_of_the_stride() -> None:
    """60x68 images: the decoders' logits are 64x72; Lu runs on that grid (boxes padded), the strong-view
    CE at the image size."""
    model = _model().train()
    v = _views(5, size=(60, 68))
    out = model(
        v["images"],
        v["targets"],
        v["unlabeled"],
        strong=v["strong"],
        cutmix_box=v["cutmix_box"],
        cutmix_partner=v["cutmix_partner"],
        strong_weight=1.0,
    )
    assert torch.isfinite(out["loss"])
    assert out["loss_unsup"] > 0
    assert out["loss_strong"] > 0
    out["loss"].backward()


def test_bf16_autocast_on_cpu() -> None:
    model = _model().train()
    v = _views(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(v.pop("images"), v.pop("targets"), **v, target_confidence=0.5, strong_weight=1.0)
    assert all(torch.isfinite(out[k]) for k in ("loss", "loss_unsup", "loss_strong"))
    out["loss"].backward()
    assert _grad_norm(model.main_decoder) > 0
    assert all(_grad_norm(d) > 0 for d in model.aux_decoders)


def test_two_domains_with_cross_view_heads() -> None:
    torch.manual_seed(0)
    model = MultiDomainCCT(
        "timm:resnet18",
        {
            "a": {"num_classes": 3, "perturbations": {"feature_noise": 1}},
            "b": {"num_classes": 2, "perturbations": {}},
        },
        psp_channels=16,
    ).train()
    va, vb = _views(7), _views(8)
    vb["targets"] = vb["targets"].clamp_max(1)
    batches = {
        "a": {**va, "strong_weight": 1.0, "target_confidence": 0.5},
        "b": {**vb, "strong_weight": 1.0},  # no auxiliary decoder: FixMatch-style for this domain
    }
    seen: list[tuple[int, bool]] = []
    hook = model.psp.register_forward_hook(lambda m, i, o: seen.append((o.shape[0], o.requires_grad)))
    try:
        out = model(batches=batches)
    finally:
        hook.remove()
    assert seen == [(4, False), (8, True)]  # both weak views in one pass, then everything else in one
    assert out["a/loss_unsup"] > 0
    assert float(out["b/loss_unsup"]) == 0.0
    assert out["a/loss_strong"] > 0
    assert out["b/loss_strong"] > 0
    torch.testing.assert_close(out["loss_strong"], out["a/loss_strong"] + out["b/loss_strong"])
    torch.testing.assert_close(out["confident"], (out["a/confident"] + out["b/confident"]) / 2)
    out["loss"].backward()
    assert _grad_norm(model.heads["b"].main_decoder) > 0
    assert _grad_norm(model.heads["a"].aux_decoders) > 0


# ---------------------------------------------------------------------------------------------------- config


def _tiny(root: Path, output: Path, **unlabeled: Any) -> dict[str, Any]:
    return {
        "experiment": {"name": "tiny", "output_dir": str(output), "seed": 0},
        "model": {"encoder": "timm:resnet18", "psp_channels": 16, "perturbations": dict(PERTS)},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [32, 32],
            "scale_range": [0.75, 1.25],
            "batch_size": 2,
            "val_batch_size": 4,
            "num_workers": 0,
            "check": "off",
        },
        "train": {
            "iterations": 4,
            "eval_every": 0,
            "checkpoint_every": 2,
            "log_every": 1,
            "unlabeled": {"views": "weak-strong", **unlabeled},
        },
    }


def test_config_keys_and_their_checks(tmp_path: Path) -> None:
    raw = _tiny(tmp_path, tmp_path / "run", confidence=0.9, strong={"cutmix": 0.25})
    cfg = config_from_dict(raw)
    unlabeled = cfg.train.unlabeled
    assert unlabeled.cross_view
    assert unlabeled.main_on_strong
    assert unlabeled.main_weight == 1.0
    assert unlabeled.strong.cutmix.p == 0.25
    assert unlabeled.strong.photometric.p_grayscale == 0.2
    # A saved config loads again (every key written out).
    assert config_from_dict(cfg.to_dict()).train.unlabeled == unlabeled
    # The FixMatch-style baseline: no auxiliary decoder, still a run on unlabeled images.
    raw["model"]["perturbations"] = {}
    assert not config_from_dict(raw).supervised_only
    raw["train"]["unlabeled"]["main_on_strong"] = False
    assert config_from_dict(raw).supervised_only  # nothing would learn from them
    # The default is the paper's CCT, unchanged; a cross-view setting without the views is named.
    assert config_from_dict({}).train.unlabeled.views == "same"
    with pytest.raises(ConfigError, match=r"train.unlabeled.confidence only apply to views: weak-strong"):
        config_from_dict({"train": {"unlabeled": {"confidence": 0.5}}})
    with pytest.raises(ConfigError, match=r"train\.unlabeled\.strong\.photometric\.brightnes"):
        config_from_dict(
            {"train": {"unlabeled": {"views": "weak-strong", "strong": {"photometric": {"brightnes": 1}}}}}
        )
    with pytest.raises(ConfigError, match=r"train\.unlabeled\.confidence"):
        config_from_dict(
            {"model": {"consistency_confidence": 0.5}, "train": {"unlabeled": {"views": "weak-strong"}}}
        )
    with pytest.raises(ConfigError, match="views"):
        config_from_dict({"train": {"unlabeled": {"views": "weak"}}})
    # aux_view: only with weak-strong; with weak, the same-view loss's confidence is allowed again.
    assert cfg.train.unlabeled.aux_view == "strong"
    assert not cfg.train.unlabeled.aux_on_weak
    with pytest.raises(ConfigError, match=r"train.unlabeled.aux_view only apply to views: weak-strong"):
        config_from_dict({"train": {"unlabeled": {"aux_view": "weak"}}})
    on_weak = config_from_dict(
        {
            "model": {"consistency_confidence": 0.5},
            "train": {"unlabeled": {"views": "weak-strong", "aux_view": "weak"}},
        }
    )
    assert on_weak.train.unlabeled.aux_on_weak
    with pytest.raises(ConfigError, match="aux_view"):
        config_from_dict({"train": {"unlabeled": {"views": "weak-strong", "aux_view": "both"}}})


# ---------------------------------------------------------------------------------------------------- trainer


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cct_train.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_synthetic_dataset(root, n_train=12, n_val=2, size=(48, 48), seed=0)
    return root


def test_trainer_cross_view_step(scenes: Path, tmp_path: Path) -> None:
    """The trainer's two views: the strong one is the weak one under CutMix (photometric off here, so the
    mixing is seen exactly) with the boxes it hands to the model; the step logs the new terms."""
    from cct_train.engine.trainer import Trainer

    off = {"p_jitter": 0.0, "p_grayscale": 0.0, "p_blur": 0.0}
    raw = _tiny(scenes, tmp_path / "run", strong={"photometric": off, "cutmix": 1.0})
    raw["train"]["iterations"] = 2
    trainer = Trainer(config_from_dict(raw), quiet=True)
    seen: list[dict[str, Any]] = []
    inputs = trainer._inputs

    def recording(*args: Any) -> Any:
        out = inputs(*args)
        seen.append({k: v for k, v in vars(out).items() if isinstance(v, Tensor)})
        return out

    trainer._inputs = recording  # type: ignore[method-assign]
    trainer.fit()
    assert len(seen) == 2
    for step in seen:
        box, partner = step["cutmix_box"], step["cutmix_partner"]
        assert box.any()
        torch.testing.assert_close(
            step["strong"], image.apply_cutmix(step["unlabeled"], box, partner), rtol=0, atol=0
        )
    assert not torch.equal(seen[0]["unlabeled"], seen[1]["unlabeled"])
    with (tmp_path / "run" / "logs" / "metrics.csv").open() as handle:
        keys = {row["key"] for row in csv.DictReader(handle)}
    assert {"loss_strong", "confident", "loss_unsup", "loss_sup"} <= keys


@pytest.mark.parametrize("aux_view", ["strong", "weak"])
def test_trainer_cross_view_resumes_exactly(scenes: Path, tmp_path: Path, aux_view: str) -> None:
    """Interrupted after 2 of 4 steps and resumed: the very weights of the uninterrupted run (the strong
    views and CutMix boxes come from the checkpointed unlabeled generator)."""
    from cct_train.engine.trainer import Trainer

    def raw(out: str) -> dict[str, Any]:
        return _tiny(scenes, tmp_path / out, confidence=0.3, aux_view=aux_view)

    straight = Trainer(config_from_dict(raw("a")), quiet=True)
    assert straight.unwrapped.num_aux_decoders == sum(PERTS.values())
    before = {k: v.clone() for k, v in straight.unwrapped.main_decoder.state_dict().items()}
    straight.fit()
    final = {k: v.clone() for k, v in straight.unwrapped.state_dict().items()}
    assert any(not torch.equal(before[k], v) for k, v in straight.unwrapped.main_decoder.state_dict().items())

    partial = Trainer(config_from_dict(raw("b")), quiet=True)
    partial.config.train.__dict__["iterations"] = 2  # stop half-way; the schedules still span 4 steps
    partial.fit()
    resumed = Trainer(config_from_dict(raw("b")), quiet=True)
    resumed.resume(tmp_path / "b" / "checkpoints" / "last.pt")
    assert resumed.step == 2
    resumed.fit()
    for key, value in resumed.unwrapped.state_dict().items():
        assert torch.equal(value, final[key]), key


@pytest.mark.parametrize("aux_view", ["strong", "weak"])
def test_trainer_two_domains_cross_view(scenes: Path, tmp_path: Path, aux_view: str) -> None:
    from cct_train.data import generate_synthetic_dataset
    from cct_train.engine.trainer import Trainer

    other = tmp_path / "shapes"
    generate_synthetic_dataset(other, n_train=8, n_val=2, size=(48, 64), seed=1, num_classes=3)
    raw = _tiny(scenes, tmp_path / "run", confidence=None, aux_view=aux_view)
    data_a = raw.pop("data")
    data_b = {**data_a, "root": str(other), "split": {"n_labeled": 4, "seed": 1}, "crop_size": [32, 48]}
    raw["domains"] = [
        {"name": "scenes", "data": data_a},
        {"name": "shapes", "data": data_b, "perturbations": {}},  # FixMatch-style head
    ]
    raw["train"].update(iterations=2, domain_sampling="mix", checkpoint_every=0)
    trainer = Trainer(config_from_dict(raw), quiet=True)
    logged: list[dict[str, float]] = []
    trainer.fit(lambda step, logs: logged.append(logs))
    last = logged[-1]
    assert last["scenes/loss_unsup"] > 0
    assert last["shapes/loss_unsup"] == 0.0
    assert last["scenes/loss_strong"] > 0
    assert last["shapes/loss_strong"] > 0
    assert 0.0 <= last["confident"] <= 1.0


# ------------------------------------------------------------------------------------------------------ study


def _study(**extra: Any) -> dict[str, Any]:
    base = {
        "model": {"encoder": "timm:resnet18", "psp_channels": 16, "background": [0]},
        "data": {"dataset": "folder", "root": "data/x", "crop_size": [32, 32], "num_workers": 0},
        "train": {"iterations": 2, "eval_every": 0, "checkpoint_every": 0, "trackers": []},
    }
    return {"name": "t", "base": base, "n_labeled": [4], "seeds": [0], **extra}


def test_study_methods_fixmatch_and_crossview(tmp_path: Path) -> None:
    from cct_train.study import ALL_METHODS, DEFAULT_METHODS, fingerprint, plan_runs, study_config_from_dict
    from cct_train.study.schema import base_config

    assert ALL_METHODS[-4:] == ("cct", "fixmatch", "crossview", "cct_fixmatch")
    # A study that names no methods plans the paper's ablation, as before these methods existed.
    assert study_config_from_dict(_study()).methods == list(DEFAULT_METHODS)
    assert "crossview" not in DEFAULT_METHODS
    assert "fixmatch" not in DEFAULT_METHODS

    study = study_config_from_dict(
        _study(
            methods=["crossview", "fixmatch", "cct", "supervised"],
            crossview={"confidence": 0.8, "main_on_strong": False, "strong": {"cutmix": 0.3}},
            cct_decoders={"feature_noise": 2, "vat": 1},
        )
    )
    assert study.methods == ["supervised", "cct", "fixmatch", "crossview"]  # the report's order
    specs = {s.method: s for s in plan_runs(study, base_config(study), tmp_path)}
    unlabeled = {m: s.config["train"]["unlabeled"] for m, s in specs.items()}
    assert unlabeled["supervised"]["views"] == unlabeled["cct"]["views"] == "same"
    assert unlabeled["crossview"]["views"] == unlabeled["fixmatch"]["views"] == "weak-strong"
    assert unlabeled["crossview"]["confidence"] == 0.8
    assert unlabeled["crossview"]["strong"]["cutmix"]["p"] == 0.3
    assert unlabeled["crossview"]["main_on_strong"] is False
    assert unlabeled["fixmatch"]["main_on_strong"] is True  # its only unlabeled loss
    assert specs["fixmatch"].config["model"]["perturbations"] == {}
    assert specs["crossview"].config["model"]["perturbations"] == {"feature_noise": 2, "vat": 1}
    assert specs["crossview"].config["train"]["mode"] == specs["fixmatch"].config["train"]["mode"] == "cct"
    assert not config_from_dict(specs["fixmatch"].config).supervised_only
    # The paper's CCT runs keep the fingerprint they had before train.unlabeled existed.
    old = {**specs["cct"].config, "train": dict(specs["cct"].config["train"])}
    del old["train"]["unlabeled"]
    assert fingerprint(specs["cct"].config) == fingerprint(old)
    assert fingerprint(specs["crossview"].config) != fingerprint(specs["cct"].config)
    # Cross-view runs finished before aux_view existed (its default, strong) keep their fingerprint too.
    before = {**specs["crossview"].config, "train": dict(specs["crossview"].config["train"])}
    before["train"]["unlabeled"] = dict(before["train"]["unlabeled"])
    assert before["train"]["unlabeled"].pop("aux_view") == "strong"
    assert fingerprint(specs["crossview"].config) == fingerprint(before)


def test_study_method_cct_fixmatch(tmp_path: Path) -> None:
    """cct_fixmatch: the full CCT's decoders on the weak view, and the main decoder on the strong view."""
    from cct_train.study import fingerprint, plan_runs, study_config_from_dict
    from cct_train.study.schema import base_config

    study = study_config_from_dict(
        _study(
            methods=["cct_fixmatch", "crossview", "cct"],
            crossview={"confidence": 0.8, "main_on_strong": False},
            cct_decoders={"feature_noise": 2, "vat": 1},
        )
    )
    assert study.methods == ["cct", "crossview", "cct_fixmatch"]
    specs = {s.method: s for s in plan_runs(study, base_config(study), tmp_path)}
    unlabeled = specs["cct_fixmatch"].config["train"]["unlabeled"]
    assert unlabeled["views"] == "weak-strong"
    assert unlabeled["aux_view"] == "weak"
    assert unlabeled["main_on_strong"] is True  # whatever the block says: it defines the method
    assert unlabeled["confidence"] == 0.8
    assert specs["crossview"].config["train"]["unlabeled"]["aux_view"] == "strong"
    assert specs["cct_fixmatch"].config["model"]["perturbations"] == {"feature_noise": 2, "vat": 1}
    assert config_from_dict(specs["cct_fixmatch"].config).train.unlabeled.aux_on_weak
    assert fingerprint(specs["cct_fixmatch"].config) != fingerprint(specs["crossview"].config)


def test_study_cross_view_settings_go_in_their_block() -> None:
    from cct_train.study import study_config_from_dict

    base = _study()["base"]
    base["train"]["unlabeled"] = {"views": "weak-strong"}
    with pytest.raises(ConfigError, match="crossview:"):
        study_config_from_dict(_study(base=base))
    with pytest.raises(ConfigError, match="weak-strong"):
        study_config_from_dict(_study(crossview={"views": "same"}))
    with pytest.raises(ConfigError, match=r"crossview\.confidnce"):
        study_config_from_dict(_study(crossview={"confidnce": 0.5}))


def test_round_17_study_yaml_plans_the_four_methods(tmp_path: Path) -> None:
    from cct_train.study import load_study_config, plan_runs
    from cct_train.study.schema import base_config

    path = (
        Path(__file__).resolve().parents[3]
        / "docs/results/camvid-pretrained-r17/camvid-pretrained-hr-crossview.yaml"
    )
    study = load_study_config(path)
    assert study.methods == ["supervised", "cct", "fixmatch", "crossview"]
    assert study.n_labeled == [20, 50]
    assert study.seeds == [0, 1, 2]
    specs = plan_runs(study, base_config(study), tmp_path)
    assert len(specs) == 24
    cross = next(s for s in specs if s.method == "crossview")
    cct = next(s for s in specs if s.method == "cct")
    assert cross.config["model"]["perturbations"] == cct.config["model"]["perturbations"]
    assert cross.config["train"]["unlabeled"]["confidence"] == 0.95
