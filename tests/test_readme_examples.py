"""The packages' README examples run as written (they may use timm as the user's own code does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(readme: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


@pytest.mark.parametrize("package", ["cct-perturb", "cct-losses"])
def test_readme_python_blocks_run(package: str) -> None:
    readme = ROOT / "packages" / package / "README.md"
    blocks = _blocks(readme)
    assert blocks, f"{readme} has no python example"
    for block in blocks:
        exec(compile(block, str(readme), "exec"), {"__name__": "__readme__"})
