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
    """``text`` without any whitespace: rich wraps messages at 80 columns, inside long paths too, so
    messages and the phrases expected in them are compared without it (see :func:`_says`)."""
    return "".join(text.split())


def _says(message: str, *phrases: str) -> bool:
    """Whether ``message`` (an output passed through :func:`_flat`) holds every phrase."""
    return all(_flat(phrase) in message for phrase in phrases)


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
        assert _says(message, f"is in use by process {first.pid}")
        assert _says(message, "--set experiment.output_dir=")
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
    assert _says(message, f"experiment.output_dir {run} already holds a trained run")
    assert _says(message, "last.pt at step 3 of 3")
    assert _says(message, "--resume auto")
    assert _says(message, "--overwrite")
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
        assert _says(message, f"-o {output} is")
        assert _says(message, "Choose an output folder outside")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == original
    # A single image predicted into its own folder would write a.png over a.png: refused too.
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos / "a.png"), "-o", str(photos)])
    assert _says(_clean_failure(result), "would overwrite the input image")
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
    assert _says(_flat(result.output), "3 predictions written")
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
    assert _says(_clean_failure(again), "pass --overwrite to replace earlier predictions")
    again = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output


# ------------------------------------------------------------------------------------ 5. a full disk
#: What torch.save raised when a 30 MB tmpfs filled up during a checkpoint (the probe's case 5).
TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 27332928 vs 27332816"


def test_a_full_disk_during_a_checkpoint_says_so_and_keeps_the_last_one(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 5: torch.save reports a full disk as a RuntimeError, not an OSError; the message still says
    which file, that the previous checkpoint is intact, and what to do, and no partial file is left."""
    import torch

    real_save = torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            Path(f).write_bytes(b"\0" * 1000)
            raise RuntimeError(TORCH_DISK_FULL)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    message = _clean_failure(_train(write_config("run", iterations=4)))
    assert _says(message, f"could not write the checkpoint {run / 'checkpoints' / 'last.pt'}")
    assert _says(message, "the write stopped after 0.0 MB")
    assert _says(message, TORCH_DISK_FULL)  # brackets and all: not taken for rich markup
    assert _says(message, "The previous checkpoint there, if any, is intact")
    assert _says(message, "Free disk space")
    assert _says(message, "--resume auto")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file-size limit (RLIMIT_FSIZE)")
def test_a_real_write_limit_fails_cleanly_in_the_cct_process(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 5 without injection: the `cct` process may write no file over 1 MB (``ulimit -f``), so the
    real torch.save of a 3 MB checkpoint fails inside PyTorch's writer, as on a full disk."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    config = write_config("run", iterations=2)
    command = [sys.executable, "-m", "cct_train.cli", "train", "-c", str(config)]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    message = _flat(done.stderr)
    assert _says(message, f"could not write the checkpoint {tmp_path / 'run' / 'checkpoints' / 'last.pt'}:")
    assert _says(message, "File too large") or _says(message, "unexpected pos")
    assert not list((tmp_path / "run").rglob("*.tmp"))


# --------------------------------------------------------------- 6. partial files of killed writes
def test_partial_checkpoint_files_of_a_killed_run_are_removed_by_the_next_run(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 6: a SIGKILL during an atomic write leaves its temporary file; the next run in the folder
    (it holds the lock, so no live write is among them) removes such files, says so, and nothing else."""
    run = tmp_path / "run"
    config = write_config("run", iterations=2)
    assert _train(config).exit_code == 0
    partial = [
        run / "checkpoints" / ".last.pt.k2j4x9q1.tmp",
        run / "checkpoints" / ".best.pt.a1b2c3d4.tmp",
        run / ".model.safetensors.zz91ab02.tmp",
    ]
    for path in partial:
        path.write_bytes(b"\0" * 500_000)
    unrelated = run / "checkpoints" / ".notes.tmp"
    unrelated.write_text("mine")
    resumed = _train(config, "--resume", "auto", "--set", "train.iterations=3")
    assert resumed.exit_code == 0, resumed.output
    assert _says(_flat(resumed.output), "removed 3 partial file(s) (1.5 MB)")
    assert not any(path.exists() for path in partial)
    assert unrelated.read_text() == "mine"


# ------------------------------------------------------------ 7. no checkpoint named that does not exist
def test_nonfinite_stop_without_a_checkpoint_says_there_is_none(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 7: `--set train.optimizer.lr=.inf` stops after the non-finite steps and says that no
    checkpoint was saved, instead of naming checkpoints/last.pt as "the last good checkpoint"."""
    config = write_config("run", iterations=50, checkpoint_every=20, nonfinite_patience=5)
    message = _clean_failure(_train(config, "--set", "train.optimizer.lr=.inf"))
    assert _says(message, "the loss was NaN or infinite in 5 steps in a row")
    assert _says(message, "No checkpoint was saved (the first was due at step 20), so there is nothing")
    assert not _says(message, "last good checkpoint")
    assert _says(message, "train.optimizer.lr (now inf)")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_nonfinite_weights_are_never_saved_over_a_good_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    """Case 7: weights that turned infinite after a good checkpoint are not written over it, and the
    message names that checkpoint with its true step."""
    import torch

    from cct_train.config import config_from_dict
    from cct_train.engine.trainer import NonFiniteLossError, Trainer

    run = tmp_path / "run"
    Trainer(config_from_dict(_tiny(tiny_root, run, iterations=2)), quiet=True).fit()
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    trainer = Trainer(config_from_dict(_tiny(tiny_root, run, iterations=6)), quiet=True)
    trainer.resume(last)
    with torch.no_grad():
        next(trainer.unwrapped.parameters()).fill_(float("inf"))  # what an infinite step would leave
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = _flat(str(info.value))
    assert _says(message, "became NaN or infinite by step 3, so they were not saved")
    assert _says(message, f"The last good checkpoint is {last} (step 2)")
    assert last.read_bytes() == before
