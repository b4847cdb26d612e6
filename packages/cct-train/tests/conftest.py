"""Fixtures of cct-train's tests: ``bench``, the builders of tiny benchmark copies (benchmark_fixtures.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _load_fixtures() -> ModuleType:
    path = Path(__file__).with_name("benchmark_fixtures.py")
    spec = importlib.util.spec_from_file_location("cct_train_benchmark_fixtures", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FIXTURES = _load_fixtures()


@pytest.fixture(scope="session")
def bench() -> ModuleType:
    """``make_voc(root)``, ``make_cityscapes(root)``, ``make_sunrgbd(root)``, ``make_camvid(root)`` ..."""
    return _FIXTURES
