"""The prepared GPU run of issue #15 (scripts/device/): CamVid must arrive on the GPU machine as the data set
loader reads it, labels bit for bit, within the device tool's size limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRANSPORT = REPO / "scripts" / "device" / "camvid_transport.py"


def _segnet_layout(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for name in names:
            # a smooth frame (JPEG's home ground, like a photograph) and a label map of 11 classes
            ramp = np.linspace(0, 255, 48 * 64).reshape(48, 64)
            frame = np.stack([ramp, ramp.T.reshape(48, 64), 255 - ramp], axis=-1) + rng.normal(
                0, 2, (48, 64, 3)
            )
            Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(root / split / f"{name}.png")
            Image.fromarray(rng.integers(0, 12, (48, 64)).astype(np.uint8)).save(
                root / f"{split}annot" / f"{name}.png"
            )
            lines.append(f"{split}/{name}.png {split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def _transport(*args: Path | str) -> None:
    subprocess.run([sys.executable, str(TRANSPORT), *map(str, args)], check=True, capture_output=True)


def test_camvid_survives_the_trip_to_the_gpu_machine(tmp_path: Path) -> None:
    src, restored = tmp_path / "camvid", tmp_path / "restored"
    _segnet_layout(src)
    _transport("pack", src, tmp_path / "camvid.tar")
    _transport("unpack", tmp_path / "camvid.tar", restored)
    for split in ("train", "val"):
        assert (restored / f"{split}.txt").read_text() == (src / f"{split}.txt").read_text()
        for line in (src / f"{split}.txt").read_text().split():
            original, back = Image.open(src / line), Image.open(restored / line)
            assert back.format == "PNG"  # the loader finds every file under its own name
            if "annot" in line:
                assert np.array_equal(np.asarray(back), np.asarray(original))  # labels are never lossy
            else:
                error = np.abs(np.asarray(back, dtype=float) - np.asarray(original, dtype=float)).mean()
                assert error < 3.0  # JPEG q90 without chroma subsampling: a few grey levels at most


def test_packing_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "camvid").mkdir()
    result = subprocess.run(
        [sys.executable, str(TRANSPORT), "pack", str(tmp_path / "camvid"), str(tmp_path / "x.tar")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "train.txt: missing" in result.stderr
    assert not list(tmp_path.glob("x.tar*"))


@pytest.mark.parametrize("script", ["prepare.sh", "pretrained_gpu_n20.sh"])
def test_device_shell_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "device" / script)], check=True)
