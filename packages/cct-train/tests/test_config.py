from pathlib import Path

import pytest

from cct_train.config import PAPER_PERTURBATIONS, ConfigError, apply_overrides, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_defaults_are_the_papers() -> None:
    cfg = load_config()
    assert cfg.model.perturbations == PAPER_PERTURBATIONS
    assert sum(cfg.model.perturbations.values()) == 30
    assert cfg.train.optimizer.lr == 0.01
    assert cfg.train.optimizer.momentum == 0.9
    assert cfg.train.optimizer.weight_decay == 1e-4
    assert cfg.train.optimizer.backbone_lr_factor == 0.1
    assert cfg.train.optimizer.poly_power == 0.9
    assert cfg.train.consistency.weight == 30.0
    assert cfg.train.consistency.rampup == 0.1


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.experiment.name


def test_overrides_are_typed() -> None:
    cfg = load_config(None, ["train.iterations=12", "data.crop_size=[64, 96]", "model.pretrained=true"])
    assert cfg.train.iterations == 12
    assert cfg.data.crop_size == (64, 96)
    assert cfg.model.pretrained is True


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  iteratons: 5\n")
    with pytest.raises(ConfigError, match=r"train\.iteratons") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        load_config(None, ["data.batch_size=many"])


def test_negative_k_rejected() -> None:
    with pytest.raises(ConfigError, match="feature_noise"):
        load_config(None, ["model.perturbations={feature_noise: -1}"])


def test_crop_larger_than_scaled_image_rejected() -> None:
    with pytest.raises(ConfigError, match="crop_size"):
        load_config(
            None, ["data.resize=[100, 100]", "data.scale_range=[0.5, 0.9]", "data.crop_size=[96, 96]"]
        )


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        apply_overrides({}, ["train.iterations"])


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/config.yaml")


def test_yaml_words_stay_words_on_the_command_line() -> None:
    # YAML 1.1 reads `off` / `no` as booleans: `--set data.check=off` must still mean the word.
    from cct_train.config import load_config

    assert load_config(None, ["data.check=off"]).data.check == "off"
    assert load_config(None, ["data.hflip=no"]).data.hflip is False
    assert load_config(None, ["data.hflip=true"]).data.hflip is True


def test_consistency_rampup_counts_iterations_above_one() -> None:
    from cct_train.engine.trainer import consistency_schedule

    for text, expected in (("150", 150), ("150.0", 150), ("0", 0)):
        cfg = load_config(None, [f"train.consistency.rampup={text}", "train.iterations=1000"])
        assert cfg.train.consistency.rampup == expected
        assert type(cfg.train.consistency.rampup) is int
        assert consistency_schedule(cfg).rampup_iters == expected  # used to raise ValueError
    fraction = load_config(None, ["train.consistency.rampup=1", "train.iterations=1000"])
    assert fraction.train.consistency.rampup == 1.0  # 1 is the whole of training, not one iteration
    assert consistency_schedule(fraction).rampup_iters == 1000
    with pytest.raises(ConfigError, match=r"train\.consistency\.rampup"):
        load_config(None, ["train.consistency.rampup=150.5"])


def test_confidence_masking_reaches_every_head() -> None:
    """model.confidence (Lu's confidence mask): off by default as in the paper, validated with its key
    named, and given to the model (and to each head of a multi-domain model) by the one factory."""
    from cct_train.models.factory import build_model

    assert load_config().model.confidence is None
    with pytest.raises(ConfigError, match=r"model\.confidence"):
        load_config(None, ["model.confidence=1.5"])
    small = ["model.encoder=timm:resnet18", "model.psp_channels=8", "model.perturbations={dropout: 1}"]
    cfg = load_config(None, [*small, "model.confidence=0.9"])
    model = build_model(cfg, 3)
    assert model.confidence == 0.9  # type: ignore[union-attr]
    domains = [{"name": "a", "data": {"root": "a"}}, {"name": "b", "data": {"root": "b"}}]
    multi = build_model(load_config(None, [*small, "model.confidence=0.5", f"domains={domains}"]), 3)
    assert [head.confidence for head in multi.heads.values()] == [0.5, 0.5]  # type: ignore[union-attr]


def test_consistency_schedules_all_build() -> None:
    from cct_train.engine.trainer import consistency_schedule

    for schedule in ("sigmoid", "linear", "log", "cosine"):
        cfg = load_config(None, [f"train.consistency.schedule={schedule}", "train.iterations=100"])
        weight = consistency_schedule(cfg)  # "cosine" used to fail: no such ramp-up
        # (the log ramp ends at 1 - exp(-5) of lambda_u, as the original's)
        assert weight(0) <= weight(5) <= weight(10) == pytest.approx(30.0, rel=0.01)
    cosine = consistency_schedule(load_config(None, ["train.consistency.schedule=cosine"]))
    assert cosine(0) == 0.0
    assert cosine(cosine.rampup_iters / 2) == pytest.approx(15.0)


def test_perturbation_typos_fail_at_load_before_any_data_is_read(tmp_path: Path) -> None:
    import time

    from typer.testing import CliRunner

    from cct_train.cli import app

    missing_root = tmp_path / "no-data-here"  # the check would fail on it: the config must fail first
    with pytest.raises(ConfigError, match=r"model\.perturbations.*feature_nosie.*feature_noise"):
        load_config(None, ["model.perturbations={feature_nosie: 2}", f"data.root={missing_root}"])
    with pytest.raises(ConfigError, match=r"model\.perturbation_kwargs.*epsilon"):
        load_config(None, ["model.perturbation_kwargs={vat: {epsilon: 1.0}}"])
    with pytest.raises(ConfigError, match=r"model\.perturbation_kwargs.*cutout"):
        load_config(None, ["model.perturbation_kwargs={cutout: {erase: 0.3}}"])
    domain = {"name": "a", "data": {"root": str(missing_root)}, "perturbations": {"vta": 1}}
    with pytest.raises(ConfigError, match=r"domains\.0\.perturbations.*vta"):
        load_config(None, [f"domains=[{domain}]"])
    assert load_config(None, ["model.perturbations={spatial_dropout: 1}"]).model.perturbations  # an alias

    start = time.perf_counter()
    for command in (["train"], ["data", "check"]):
        result = CliRunner().invoke(
            app,
            [
                *command,
                "--set",
                "model.perturbations={feature_nosie: 2}",
                "--set",
                f"data.root={missing_root}",
            ],
        )
        assert result.exit_code == 2, result.output
        assert "feature_nosie" in result.output
        assert "no-data-here" not in result.output  # stopped by the config, not by the data
    assert time.perf_counter() - start < 10


# -- issue 41 item 3: every key gets "did you mean", every error says where the value came from -------------


def test_typo_in_set_suggests_the_key_and_blames_the_option(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  iterations: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.iteration=20"])
    message = str(info.value)
    assert (
        "train.iteration (--set train.iteration=20): unknown key; did you mean train.iterations?" in message
    )
    assert f"{path} with --set" in message


def test_typo_in_file_names_its_line_and_section_typos_too(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  encoder: timm:resnet18\ntrain:\n  iterations: 10\n  log_evry: 5\ntrian: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"train.log_evry ({path}, line 5): unknown key; did you mean train.log_every" in message
    assert f"trian ({path}, line 6): unknown key; did you mean train?" in message


def test_key_of_another_section_and_values_as_read() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.batch_size=4", "data.batch_size=many", "train.iterations=0"])
    message = str(info.value)
    assert (
        "train.batch_size (--set train.batch_size=4): unknown key; it belongs elsewhere: data.batch_size?"
        in message
    )
    assert "data.batch_size (--set data.batch_size=many): Input should be a valid integer" in message
    assert "(got 'many')" in message
    assert (
        "train.iterations (--set train.iterations=0): Input should be greater than or equal to 1 (got 0)"
        in message
    )


def test_an_override_replaces_the_origin_of_what_it_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("eval:\n  scales: [1.0, 2.0]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["eval.scales=[a]"])
    assert "eval.scales.0 (--set eval.scales=[a])" in str(info.value)
