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
    assert cfg.train.unsupervised_weight.lambda_u == 30.0
    assert cfg.train.unsupervised_weight.rampup == 0.1


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
        cfg = load_config(None, [f"train.unsupervised_weight.rampup={text}", "train.iterations=1000"])
        assert cfg.train.unsupervised_weight.rampup == expected
        assert type(cfg.train.unsupervised_weight.rampup) is int
        assert consistency_schedule(cfg).rampup_iters == expected  # used to raise ValueError
    fraction = load_config(None, ["train.unsupervised_weight.rampup=1", "train.iterations=1000"])
    assert fraction.train.unsupervised_weight.rampup == 1.0  # 1 is the whole of training, not one iteration
    assert consistency_schedule(fraction).rampup_iters == 1000
    with pytest.raises(ConfigError, match=r"train\.unsupervised_weight\.rampup"):
        load_config(None, ["train.unsupervised_weight.rampup=150.5"])


def test_confidence_masking_reaches_every_head() -> None:
    """model.consistency_confidence (Lu's confidence mask): off by default as in the paper, validated with
    its key named, and given to the model (and to each head of a multi-domain model) by the one factory."""
    from cct_train.models.factory import build_model

    assert load_config().model.consistency_confidence is None
    with pytest.raises(ConfigError, match=r"model\.consistency_confidence"):
        load_config(None, ["model.consistency_confidence=1.5"])
    small = ["model.encoder=timm:resnet18", "model.psp_channels=8", "model.perturbations={dropout: 1}"]
    cfg = load_config(None, [*small, "model.consistency_confidence=0.9"])
    model = build_model(cfg, 3)
    assert model.confidence == 0.9  # type: ignore[union-attr]
    domains = [{"name": "a", "data": {"root": "a"}}, {"name": "b", "data": {"root": "b"}}]
    multi = build_model(
        load_config(None, [*small, "model.consistency_confidence=0.5", f"domains={domains}"]), 3
    )
    assert [head.confidence for head in multi.heads.values()] == [0.5, 0.5]  # type: ignore[union-attr]


def test_consistency_schedules_all_build() -> None:
    from cct_train.engine.trainer import consistency_schedule

    for schedule in ("sigmoid", "linear", "log", "cosine"):
        cfg = load_config(None, [f"train.unsupervised_weight.schedule={schedule}", "train.iterations=100"])
        weight = consistency_schedule(cfg)  # "cosine" used to fail: no such ramp-up
        # (the log ramp ends at 1 - exp(-5) of lambda_u, as the original's)
        assert weight(0) <= weight(5) <= weight(10) == pytest.approx(30.0, rel=0.01)
    cosine = consistency_schedule(load_config(None, ["train.unsupervised_weight.schedule=cosine"]))
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


# -- issue 42: the config's names; old keys refused naming the new one, stored configs translated ---------

#: The keys of cct-train 0.3, each as a --set, and the new key its error must name.
OLD_KEYS = [
    ("model.consistency=kl", "model.consistency (--set model.consistency=kl)", "model.consistency_loss"),
    ("model.confidence=0.5", "model.confidence (--set model.confidence=0.5)", "model.consistency_confidence"),
    ("train.consistency.weight=3", "train.consistency (--set", "train.unsupervised_weight"),
    ("train.consistency={rampup: 5}", "train.consistency (--set", "train.unsupervised_weight"),
    (
        "train.unsupervised_weight.weight=3",
        "train.unsupervised_weight.weight (",
        "train.unsupervised_weight.lambda_u",
    ),
]


@pytest.mark.parametrize(("override", "key", "new"), OLD_KEYS)
def test_old_keys_on_the_command_line_name_the_new_key(override: str, key: str, new: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert f"{key}" in str(info.value)
    assert f"unknown key; it was renamed {new} (cct-train 0.4)" in str(info.value)


def test_old_keys_in_a_file_name_their_line_and_the_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(
        "model:\n  consistency: kl\n  confidence: 0.5\n"
        "train:\n  consistency: {weight: 30.0, rampup: 0.1, schedule: sigmoid}\n"
        "domains:\n  - name: a\n    data: {root: a}\n    consistency_weight: 3.0\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert (
        f"model.consistency ({path}, line 2): unknown key; it was renamed model.consistency_loss" in message
    )
    assert (
        f"model.confidence ({path}, line 3): unknown key; it was renamed model.consistency_confidence"
        in message
    )
    assert (
        f"train.consistency ({path}, line 5): unknown key; it was renamed train.unsupervised_weight "
        "(cct-train 0.4), and its weight is now lambda_u" in message
    )
    assert (
        f"domains.0.consistency_weight ({path}, line 9): unknown key; it was renamed domains.0.lambda_u"
        in message
    )
    # The new keys say the same and load.
    renamed = {
        "model.consistency": "model.consistency_loss",
        "model.confidence": "model.consistency_confidence",
    }
    cfg = load_config(
        None,
        [
            f"{renamed['model.consistency']}=kl",
            f"{renamed['model.confidence']}=0.5",
            "train.unsupervised_weight={lambda_u: 3.0, rampup: 0.2}",
            "domains=[{name: a, data: {root: a}, lambda_u: 7.0}, {name: b, data: {root: b}}]",
        ],
    )
    assert (cfg.model.consistency_loss, cfg.model.consistency_confidence) == ("kl", 0.5)
    views = dict(cfg.domain_views())
    assert views["a"].train.unsupervised_weight.lambda_u == 7.0
    assert views["b"].train.unsupervised_weight.lambda_u == 3.0
    assert views["a"].train.unsupervised_weight.rampup == 0.2


def test_old_keys_in_a_study_base_and_its_overrides_name_the_new_key(tmp_path: Path) -> None:
    from cct_train.study import load_study_config

    study = tmp_path / "study.yaml"
    study.write_text("name: s\nbase:\n  model:\n    consistency: kl\n")
    with pytest.raises(
        ConfigError,
        match=r"base\.model\.consistency: unknown key; it was renamed base\.model\.consistency_loss",
    ):
        load_study_config(study)
    study.write_text("name: s\nbase:\n  model:\n    consistency_loss: kl\n")
    assert load_study_config(study).base["model"]["consistency_loss"] == "kl"  # type: ignore[index]
    with pytest.raises(
        ConfigError,
        match=r"base\.train\.consistency \(--set base\.train\.consistency\.weight=300\)"
        r": unknown key; it was renamed base\.train\.unsupervised_weight",
    ):
        load_study_config(study, ["base.train.consistency.weight=300"])
    with_new = load_study_config(study, ["base.train.unsupervised_weight.lambda_u=300"])
    assert with_new.base["train"]["unsupervised_weight"]["lambda_u"] == 300  # type: ignore[index]


def test_a_stored_config_of_an_earlier_version_is_translated_user_input_never() -> None:
    from cct_train.config import Config, config_from_dict, rename_keys, upgrade_config

    # A checkpoint's config as cct-train 0.3 wrote it (spelled out here, not made by the code under test).
    old = Config().to_dict()
    model, train = old["model"], old["train"]
    model["consistency"], model["confidence"] = (
        model.pop("consistency_loss"),
        model.pop("consistency_confidence"),
    )
    model["consistency"], model["confidence"] = "js", 0.7
    weight = train.pop("unsupervised_weight")
    train["consistency"] = {"weight": 12.0, "rampup": weight["rampup"], "schedule": "linear"}
    old["domains"] = [{"name": "a", "data": {"root": "a"}, "consistency_weight": 2.0}]
    with pytest.raises(ConfigError, match="it was renamed"):
        config_from_dict(old)  # user input: refused
    cfg = config_from_dict(upgrade_config(old))
    assert (cfg.model.consistency_loss, cfg.model.consistency_confidence) == ("js", 0.7)
    assert (cfg.train.unsupervised_weight.lambda_u, cfg.train.unsupervised_weight.schedule) == (
        12.0,
        "linear",
    )
    assert cfg.domains[0].lambda_u == 2.0
    assert old["model"]["consistency"] == "js"  # the stored mapping is left as it was
    # Today's names back to the old ones: exactly the stored mapping (a study's fingerprints stay).
    assert rename_keys(upgrade_config(old), Config, to_old=True) == old
    # A config of today is unchanged by the translation, and a key given twice is not overwritten.
    assert upgrade_config(cfg.to_dict()) == cfg.to_dict()
    both = {"model": {"consistency": "kl", "consistency_loss": "mse"}}
    assert upgrade_config(both) == both


def test_domain_views_are_validated_copies() -> None:
    """The per-domain sections of a view are new, validated objects: the run-wide sections and the
    domains keep their values however a view is changed."""
    from cct_train.config import config_from_dict

    cfg = config_from_dict(
        {
            "model": {"perturbations": {"dropout": 2}, "background": [0]},
            "domains": [
                {
                    "name": "a",
                    "data": {"root": "a"},
                    "perturbations": {"vat": 1},
                    "background": [1, 2],
                    "lambda_u": 5,
                },
                {"name": "b", "data": {"root": "b"}},
            ],
        }
    )
    views = dict(cfg.domain_views())
    a, b = views["a"], views["b"]
    assert (a.model.perturbations, a.model.background, a.train.unsupervised_weight.lambda_u) == (
        {"vat": 1},
        [1, 2],
        5.0,
    )
    assert (b.model.perturbations, b.model.background, b.train.unsupervised_weight.lambda_u) == (
        {"dropout": 2},
        [0],
        30.0,
    )
    a.model.background.append(3)
    b.model.perturbations["vat"] = 1
    a.train.unsupervised_weight.lambda_u = 1.0
    assert cfg.model.background == [0]
    assert cfg.domains[0].background == [1, 2]
    assert cfg.model.perturbations == {"dropout": 2}
    assert cfg.train.unsupervised_weight.lambda_u == 30.0
    assert cfg.domains[0].lambda_u == 5.0
    with pytest.raises(ValueError, match="lambda_u"):
        a.train.unsupervised_weight.lambda_u = -1.0  # the view's sections validate their assignments


def test_split_lists_under_the_data_root(tmp_path: Path) -> None:
    """A relative split list that exists only under data.root is read from there (a validated split)."""
    from cct_train.config import config_from_dict

    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "labeled.txt").write_text("a\n")
    cfg = config_from_dict({"data": {"root": str(tmp_path), "split": {"labeled_list": "splits/labeled.txt"}}})
    assert cfg.data.split.labeled_list == tmp_path / "splits" / "labeled.txt"
    assert isinstance(cfg.data.split.labeled_list, Path)
    assert cfg.data.split.unlabeled_list is None
