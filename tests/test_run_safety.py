"""Nothing a user owns is lost, and every failure names its file (issue #44): run-folder locks, no run
replaced unless asked, `cct predict` never over its inputs, clean failures on a full disk, bad lists,
bad files and bad settings, bounds, and a study that stops on a signal to its own process.

The CLI cases run the real `cct` app (typer's CliRunner, or a subprocess of ``python -m cct_train.cli``
where processes or signals are the point) on tiny generated data with a tiny encoder (timm's
``test_resnet``, 32x32 images): each asserts the exit code, the message, and that no traceback is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cct_train.checkpoint import load_checkpoint
from cct_train.cli import app

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
runner = CliRunner()


def _flat(text: str) -> str:
    """The output with rich's line wrapping undone (messages are asserted as one line)."""
    return " ".join(text.split())


def _clean_failure(result: Any, code: int = 2) -> str:
    """Assert a CLI result failed with ``code`` and no traceback; return its output, unwrapped."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    return _flat(output)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cct_train.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny-data")
    generate_synthetic_dataset(root, n_train=8, n_val=2, size=(32, 32), seed=0)
    return root


def _tiny(root: Path, output: Path, **train: Any) -> dict[str, Any]:
    """A config that trains in well under a second per step on one core."""
    return {
        "experiment": {"name": "tiny", "output_dir": str(output), "seed": 0},
        "model": {"encoder": "timm:test_resnet", "psp_channels": 8, "perturbations": {"feature_noise": 1}},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [32, 32],
            "scale_range": [1.0, 1.0],
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
            "check": "quick",
        },
        "train": {"iterations": 3, "eval_every": 0, "checkpoint_every": 1, "log_every": 1, **train},
    }


@pytest.fixture
def write_config(tiny_root: Path, tmp_path: Path) -> Callable[..., Path]:
    """``write_config(name, **train)``: tmp_path/<name>.yaml training into tmp_path/<name>."""

    def write(name: str = "run", **train: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_tiny(tiny_root, tmp_path / name, **train)))
        return path

    return write


def _train(config: Path, *extra: str) -> Any:
    return runner.invoke(app, ["train", "-c", str(config), *extra])


def _csv_steps(run: Path) -> list[int]:
    """The steps of the ``loss`` rows of a run's metrics.csv, in file order."""
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()[1:]
    return [int(r.split(",")[0]) for r in rows if r.split(",")[1:2] == ["loss"]]


def _logged_step(run: Path) -> int:
    try:
        return max(_csv_steps(run), default=0)
    except (OSError, ValueError, IndexError):
        return 0


# ---------------------------------------------------------------------------------- 1. run-folder lock
@pytest.mark.slow
def test_a_second_run_into_a_locked_folder_fails_at_once_naming_the_first(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 1: two processes, one output folder. The second fails at once naming the first's pid, and
    the first's checkpoint and log hold only its own steps."""
    config = write_config("run", iterations=100_000, checkpoint_every=1)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cct_train.cli", "train", "-c", str(config)]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _logged_step(run) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run did not start training in 120 s"
            time.sleep(0.1)
        started = time.monotonic()
        second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        message = _flat(second.stderr)
        assert f"is in use by process {first.pid}" in message
        assert "--set experiment.output_dir=" in message
        # Refused before the data check and the model: the time is Python's start-up and imports.
        assert time.monotonic() - started < 60
        assert first.poll() is None, "the first run must go on"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    steps = _csv_steps(run)
    assert steps == list(range(1, len(steps) + 1)), "metrics.csv mixes two runs"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == steps[-1]


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path: Path) -> None:
    """Case 1: stale locks. A process that took the lock and died of SIGKILL (no clean-up) leaves its
    record in the lock file, but the OS dropped its lock: the next run takes it."""
    from cct_train.common.rundir import LOCK_NAME, RunFolderLock

    code = (
        "import os, sys; from cct_train.common.rundir import RunFolderLock; "
        "RunFolderLock(sys.argv[1]).acquire(); os.kill(os.getpid(), 9)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=ENV, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert '"pid"' in (tmp_path / LOCK_NAME).read_text()  # the dead holder's record is still there
    with RunFolderLock(tmp_path) as lock:
        assert lock.held
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: names no one


# ---------------------------------------------------------------------- 2. no run replaced unless asked
def test_a_new_run_never_replaces_a_trained_run_without_overwrite(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 2: the same command again (no --resume) refuses and keeps the trained run; --resume auto
    continues it with a log that does not repeat steps; --overwrite replaces it on purpose."""
    run = tmp_path / "run"
    config = write_config("run", iterations=3)
    assert _train(config).exit_code == 0
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    weights = (run / "model.safetensors").read_bytes()

    message = _clean_failure(_train(config, "--set", "train.iterations=2"))
    assert f"experiment.output_dir {run} already holds a trained run" in message
    assert "last.pt at step 3 of 3" in message
    assert "--resume auto" in message
    assert "--overwrite" in message
    assert last.read_bytes() == before
    assert (run / "model.safetensors").read_bytes() == weights
    assert _csv_steps(run) == [1, 2, 3]

    resumed = _train(config, "--resume", "auto", "--set", "train.iterations=5")
    assert resumed.exit_code == 0, resumed.output
    assert _csv_steps(run) == [1, 2, 3, 4, 5]

    replaced = _train(config, "--overwrite", "--set", "train.iterations=2")
    assert replaced.exit_code == 0, replaced.output
    assert load_checkpoint(last)["step"] == 2
    assert _csv_steps(run) == [1, 2]


# ------------------------------------------------------------------------------- 3-4. cct predict
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported model (random weights: what it predicts does not matter here)."""
    from cct_train.common.checkpoint import export_weights
    from cct_train.models.cct import CCTModel

    model = CCTModel("timm:test_resnet", num_classes=3, perturbations={}, psp_channels=8)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    export_weights(path, model, model.config, ["a", "b", "c"], [[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    return path


def _photo(path: Path, value: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 32, 3), value, dtype=np.uint8)).save(path)
    return path.read_bytes()


def test_predict_refuses_an_output_folder_that_is_or_is_inside_the_input(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Case 3: `-o` equal to the input folder (which overwrote the photos) or inside it is refused before
    anything is written; the photos are untouched."""
    photos = tmp_path / "photos"
    original = {name: _photo(photos / name, 40 * i) for i, name in enumerate(("a.png", "b.png"))}
    for output in (photos, photos / "masks"):
        result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(output)])
        message = _clean_failure(result)
        assert f"-o {output} is" in message
        assert "Choose an output folder outside" in message
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == original
    # A single image predicted into its own folder would write a.png over a.png: refused too.
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos / "a.png"), "-o", str(photos)])
    assert "would overwrite the input image" in _clean_failure(result)
    assert (photos / "a.png").read_bytes() == original["a.png"]


def test_predict_keeps_relative_paths_and_extensions_apart(tiny_model: Path, tmp_path: Path) -> None:
    """Case 4: a.png, a.jpg and sub/a.png give three predictions (not one file written three times); a
    second predict into the same folder needs --overwrite."""
    photos = tmp_path / "photos"
    for i, name in enumerate(("a.png", "a.jpg", "sub/a.png")):
        _photo(photos / name, 60 * i)
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 predictions written" in _flat(result.output)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == [
        "a_jpg.png",
        "a_jpg_overlay.png",
        "a_png.png",
        "a_png_overlay.png",
        "sub/a.png",
        "sub/a_overlay.png",
    ]
    again = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out)])
    assert "pass --overwrite to replace earlier predictions" in _clean_failure(again)
    again = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output
