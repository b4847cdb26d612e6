"""Fixtures shared by every test directory of the monorepo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent


def _shared_data() -> Path:
    # CCT_DATA_DIR overrides the default location: ../shared/data beside the checkout.
    return Path(os.environ.get("CCT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return _shared_data()


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = _shared_data() / "camvid"
    if not (root / "train.txt").is_file():
        pytest.skip(f"CamVid not found at {root} (set CCT_DATA_DIR or place ../shared/data beside the repo)")
    return root


@pytest.fixture(scope="session")
def horses_root() -> Path:
    root = _shared_data() / "horses"
    if not (root / "gray").is_dir():
        pytest.skip(
            f"Weizmann horses not found at {root} (set CCT_DATA_DIR or place ../shared/data beside the repo)"
        )
    return root


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # CI has 2 cores; intra-op threads beyond that only add contention between test processes.
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
