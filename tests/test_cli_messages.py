"""User mistakes get a few lines that say what is wrong and what to do, never a traceback (issue 41, items
2 and 3). Every case runs the real `cct` entry point on tiny data and checks the exit code and message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cct_train.config import config_from_dict, save_config


@pytest.fixture
def tiny_yaml(synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]) -> Path:
    raw = tiny_config(synthetic_root, tmp_path / "run", iterations=2)
    raw["train"]["trackers"] = ["csv"]
    path = tmp_path / "tiny.yaml"
    save_config(config_from_dict(raw), path)
    return path


# -- item 2: tracebacks become messages ---------------------------------------------------------------


def test_dry_run_without_a_config(
    tmp_path: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    fails_cleanly(cct("train", "--dry-run", cwd=tmp_path), "no config given and data.root is not set", "-c")


def test_unbalanced_yaml_in_set(
    tiny_yaml: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    proc = cct("train", "-c", str(tiny_yaml), "--set", "model.perturbations={feature_noise: 1", "--dry-run")
    fails_cleanly(
        proc, "--set model.perturbations={feature_noise: 1", "is not valid YAML", "close every bracket"
    )


def test_dry_run_runs_one_real_step_and_reports_the_real_stride(
    tiny_yaml: Path, cct: Callable[..., Any]
) -> None:
    proc = cct("train", "-c", str(tiny_yaml), "--dry-run", "--set", "model.encoder=timm:ghostnet_050")
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert "forward + backward on cpu" in output
    assert "no weight updated" in output
    # ghostnet cannot dilate: the summary says so instead of printing the stride asked for
    assert "OS32 (model.output_stride 8 is not possible with this encoder)" in output
    assert not (tiny_yaml.parent / "run").exists()  # nothing written


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "train"])
def test_encoder_that_cannot_take_the_crops(
    tiny_yaml: Path, dry_run: bool, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    args = ["train", "-c", str(tiny_yaml), "--set", "model.encoder=timm:vit_tiny_patch16_224"]
    flat = fails_cleanly(
        cct(*args, *(["--dry-run"] if dry_run else [])),
        "model.encoder timm:vit_tiny_patch16_224 cannot encode 64x64 images (data.crop_size)",
        "Input height (64) doesn't match model (224)",
        "cct encoders",
    )
    assert "warning: timm:vit_tiny_patch16_224 cannot give output stride 8" in flat  # one line, no source


def test_unexpected_errors_end_in_a_short_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The safety net of the app itself: an error no command anticipated prints a few lines, exit 1."""
    import cct_train.tools.bench as bench
    from cct_train.cli import app

    def broken(**_: Any) -> None:
        raise KeyError("no such workload table")

    monkeypatch.setattr(bench, "run_bench", broken)
    monkeypatch.delenv("CCT_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop:
        app(["bench"], prog_name="cct")
    assert stop.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "error: KeyError: 'no such workload table' (raised in" in err
    assert "CCT_TRACEBACK=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("CCT_TRACEBACK", "1")
    with pytest.raises(KeyError):
        app(["bench"], prog_name="cct")


# -- item 3: config typos -----------------------------------------------------------------------------


def test_typo_in_set_gets_did_you_mean(
    tiny_yaml: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    flat = fails_cleanly(
        cct("train", "-c", str(tiny_yaml), "--set", "train.iteration=20", "--set", "data.batch_size=two"),
        "train.iteration (--set train.iteration=20): unknown key; did you mean train.iterations?",
        "data.batch_size (--set data.batch_size=two): Input should be a valid integer",
        "(got 'two')",
    )
    assert f"{tiny_yaml} with --set" in flat


def test_typo_in_the_yaml_file_names_its_line(
    tmp_path: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  dataset: folder\n  root: photos\n  crop_sise: [96, 96]\n")
    fails_cleanly(
        cct("train", "-c", str(path), "--dry-run"),
        f"data.crop_sise ({path}, line 4): unknown key; did you mean data.crop_size?",
    )


def test_typo_in_a_study_base_key(cct: Callable[..., Any], fails_cleanly: Callable[..., str]) -> None:
    fails_cleanly(
        cct("study", "camvid", "--set", "base.train.iterashuns=3"),
        "base.train.iterashuns (--set base.train.iterashuns=3): unknown key; did you mean base.train.iterations?",
    )


# -- item 4: trackers --------------------------------------------------------------------------------


def test_tracker_without_its_package_fails_before_training(
    tiny_yaml: Path, cct: Callable[..., Any], fails_cleanly: Callable[..., str]
) -> None:
    """wandb is accepted (Accelerate supports it) but not installed here: the pip line, before any data is read."""
    pytest.importorskip("accelerate")
    from accelerate.utils import is_wandb_available

    if is_wandb_available():
        pytest.skip("wandb is installed here")
    fails_cleanly(
        cct("train", "-c", str(tiny_yaml), "--set", "train.trackers=[csv, wandb]"),
        "train.trackers asks for wandb, not installed: pip install wandb",
        "--set 'train.trackers=[csv]'",
    )


# -- item 7: matplotlib is an extra -------------------------------------------------------------------


def test_study_without_matplotlib_says_how_to_install_it(
    tmp_path: Path,
    cct: Callable[..., Any],
    fails_cleanly: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    fake = tmp_path / "no-matplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib is not installed (test stand-in)')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))
    fails_cleanly(
        cct("study", "camvid", "--data-root", str(tmp_path)),
        "cct study draws its report's figures",
        "pip install matplotlib",
        "cct-train[plots]",
    )
