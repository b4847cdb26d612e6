"""Faults lose nothing: kill and resume, SIGTERM, non-finite losses, full disks, unwritable folders."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from cct_train.common.checkpoint import CheckpointError, load_checkpoint
from cct_train.config import config_from_dict, save_config
from cct_train.engine.trainer import NonFiniteLossError, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _write_config(raw: dict[str, Any], path: Path) -> Path:
    save_config(config_from_dict(raw), path)
    return path


def _train_cmd(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cct_train.cli", "train", "-c", str(cfg), *extra]


def _logged_step(run: Path) -> int:
    csv = run / "logs" / "metrics.csv"
    if not csv.is_file():
        return 0
    steps = [line.split(",")[0] for line in csv.read_text().splitlines()[1:] if line.count(",") == 2]
    return max((int(s) for s in steps if s.isdigit()), default=0)


def _start_and_wait(cmd: list[str], run: Path, min_step: int, timeout: float = 240) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while _logged_step(run) < min_step:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended before step {min_step}: {out[-2000:]} {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("training did not reach the step in time")
        time.sleep(0.05)
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    common = {"iterations": 8, "checkpoint_every": 1, "log_every": 1, "eval_every": 0}
    straight = tmp_path / "straight"
    cfg_a = _write_config(tiny_config(synthetic_root, straight, **common), tmp_path / "a.yaml")
    done = subprocess.run(_train_cmd(cfg_a), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    cfg_b = _write_config(tiny_config(synthetic_root, killed, **common), tmp_path / "b.yaml")
    # 16 training images, 4 labeled (batch 2: an epoch every 2 steps): the kill lands mid-run and
    # the resume crosses epoch boundaries of both streams.
    proc = _start_and_wait(_train_cmd(cfg_b), killed, min_step=3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved_step = load_checkpoint(killed / "checkpoints" / "last.pt")["step"]
    assert 1 <= saved_step < 8
    resumed = subprocess.run(
        _train_cmd(cfg_b, "--resume", "auto"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {saved_step}" in resumed.stdout

    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after kill + resume"


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    run = tmp_path / "run"
    raw = tiny_config(synthetic_root, run, iterations=500, checkpoint_every=0, log_every=1, eval_every=0)
    cfg = _write_config(raw, tmp_path / "cfg.yaml")
    proc = _start_and_wait(_train_cmd(cfg), run, min_step=2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "--resume auto" in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 2 <= state["step"] < 500


def _poison(trainer: Trainer, bad_steps: set[int] | None) -> None:
    """Make the model's loss NaN at the given (1-based) steps, or always when None."""
    model = trainer.unwrapped
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        if isinstance(out, dict) and (bad_steps is None or trainer.step + 1 in bad_steps):
            out["loss"] = out["loss"] * float("nan")
        return out

    model.forward = forward  # type: ignore[method-assign]


def test_nonfinite_step_is_skipped_and_counted(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "run", iterations=3, checkpoint_every=0, log_every=1)
    trainer = Trainer(config_from_dict(raw), quiet=True)
    _poison(trainer, {2})
    snapshots: list[dict[str, torch.Tensor]] = []
    original_step = trainer.train_step

    def step(*args: Any) -> Any:
        snapshots.append({k: v.clone() for k, v in trainer.unwrapped.state_dict().items()})
        return original_step(*args)

    trainer.train_step = step  # type: ignore[method-assign]
    result = trainer.fit()
    assert result.step == 3
    assert trainer.nonfinite_skipped == 1
    after_bad = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    # Parameters did not move during the poisoned step 2 (snapshots[1] -> snapshots[2]).
    for key, value in snapshots[1].items():
        if value.is_floating_point() and "running" not in key and "num_batches" not in key:
            assert torch.equal(value, snapshots[2][key]), key
    assert all(torch.isfinite(v).all() for v in after_bad.values() if v.is_floating_point())
    rows = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    assert "nonfinite_skipped,1.0" in rows


def test_nonfinite_in_a_row_stops_with_a_clear_message(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "run", iterations=10, nonfinite_patience=3)
    trainer = Trainer(config_from_dict(raw), quiet=True)
    _poison(trainer, None)
    with pytest.raises(NonFiniteLossError, match="3 steps in a row") as info:
        trainer.fit()
    assert "train.nonfinite_patience" in str(info.value)
    assert trainer.step == 2


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    synthetic_root: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = tiny_config(synthetic_root, tmp_path / "run", iterations=4, checkpoint_every=1)
    trainer = Trainer(config_from_dict(raw), quiet=True)
    real_save = torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        trainer.fit()
    assert "intact" in str(info.value)
    assert "--resume auto" in str(info.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["last.pt"]


def test_unwritable_output_dir_fails_before_training(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    raw = tiny_config(synthetic_root, blocker / "run")
    with pytest.raises(CheckpointError, match=r"experiment\.output_dir"):
        Trainer(config_from_dict(raw), quiet=True)


def test_training_checks_data_first_and_can_skip_bad_samples(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    import shutil
    import warnings

    from cct_train.data.check import DataCheckError, DataWarning

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    images = sorted((data / "images").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated
    (data / "masks" / f"{images[1].stem}.png").unlink()  # missing mask
    raw = tiny_config(data, tmp_path / "run", iterations=2)
    with pytest.raises(DataCheckError) as info:
        Trainer(config_from_dict(raw), quiet=True)
    message = str(info.value)
    assert images[0].name in message
    assert images[1].stem in message

    raw["data"]["skip_bad_samples"] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(config_from_dict(raw), quiet=True)
    assert any(issubclass(w.category, DataWarning) and "dropped" in str(w.message) for w in caught)
    names = set(trainer.data.labeled_loader.dataset.names) | set(trainer.data.unlabeled_loader.dataset.names)
    assert images[0].stem not in names
    assert images[1].stem not in names
    assert trainer.fit().step == 2
