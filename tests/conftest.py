"""Helpers for the cross-package tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: One decoder per perturbation type: every code path of CCT, at a fraction of the paper's cost.
ALL_TYPES_ONCE = {
    "feature_noise": 1,
    "feature_drop": 1,
    "guided_cutout": 1,
    "dropout": 1,
    "context_mask": 1,
    "object_mask": 1,
    "vat": 1,
}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cct_train.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, n_train=16, n_val=4, size=(64, 64), seed=0)
    return root


def _tiny_config(root: Path, output: Path, **train: Any) -> dict[str, Any]:
    """A CPU-sized config over the synthetic scenes (resnet18, 64x64, batch 2 + 2)."""
    return {
        "experiment": {"name": "tiny", "output_dir": str(output), "seed": 0},
        "model": {"encoder": "timm:resnet18", "psp_channels": 32, "perturbations": dict(ALL_TYPES_ONCE)},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [64, 64],
            "scale_range": [0.75, 1.25],
            "batch_size": 2,
            "val_batch_size": 4,
            "num_workers": 0,
        },
        "train": {"iterations": 4, "eval_every": 0, "checkpoint_every": 2, "log_every": 1, **train},
    }


@pytest.fixture
def tiny_config() -> Callable[..., dict[str, Any]]:
    return _tiny_config


@pytest.fixture(scope="session")
def synthetic_root_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second domain: other scenes with 3 classes (a label space of its own)."""
    from cct_train.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_b")
    generate_synthetic_dataset(root, n_train=12, n_val=3, size=(48, 64), seed=1, num_classes=3)
    return root


def _tiny_two_domain_config(root_a: Path, root_b: Path, output: Path, **train: Any) -> dict[str, Any]:
    """The tiny config with two domains: "scenes" (6 classes, every perturbation once) and "shapes"
    (3 classes, two perturbation types, its own consistency weight)."""
    base = _tiny_config(root_a, output, **train)
    data_a = base.pop("data")
    data_b = {**data_a, "root": str(root_b), "split": {"n_labeled": 4, "seed": 1}, "crop_size": [48, 64]}
    base["domains"] = [
        {"name": "scenes", "data": data_a},
        {
            "name": "shapes",
            "data": data_b,
            "perturbations": {"feature_noise": 1, "guided_cutout": 1},
            "lambda_u": 10.0,
        },
    ]
    return base


@pytest.fixture
def tiny_two_domain_config() -> Callable[..., dict[str, Any]]:
    return _tiny_two_domain_config


# -- the real `cct` entry point ------------------------------------------------------------------------


def cct_command() -> list[str]:
    """The installed `cct` console script beside this interpreter, else `python -m cct_train.cli` (the same
    entry point: cct_train.cli:main)."""
    import shutil
    import sys

    script = Path(sys.executable).with_name("cct")
    if script.is_file():
        return [str(script)]
    found = shutil.which("cct")
    return [found] if found else [sys.executable, "-m", "cct_train.cli"]


def run_cct(*args: str, cwd: Path | None = None, timeout: float = 300) -> Any:
    """Run `cct ARGS` in a subprocess (one thread, no colour) and return the CompletedProcess (text)."""
    import os
    import subprocess

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    return subprocess.run(
        [*cct_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_fails_cleanly(proc: Any, *messages: str, code: int = 2) -> str:
    """The command ended with exit ``code``, printed no traceback, and its output holds every message."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    flat = " ".join(output.split())
    for message in messages:
        assert message in flat, f"{message!r} not in:\n{output[-4000:]}"
    return flat


@pytest.fixture
def cct() -> Callable[..., Any]:
    """``cct("train", "-c", path, cwd=...)``: the real `cct` entry point in a subprocess."""
    return run_cct


@pytest.fixture
def fails_cleanly() -> Callable[..., str]:
    """``fails_cleanly(proc, "message", ..., code=2)``: exit code, no traceback, every message (whitespace
    collapsed, so wrapped lines match); returns the collapsed output."""
    return assert_fails_cleanly
