import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cct_train.common.atomic import atomic_write, atomic_write_text
from cct_train.common.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "last.pt"
    payload = {"model": {"w": torch.arange(4.0)}, "step": 7, "config": {"a": [1, 2]}}
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_failed_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj: object, f: object) -> None:
        Path(str(f)).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_corrupt_and_foreign_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a CCT checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self) -> tuple:  # type: ignore[type-arg]
        return (os.system, ("echo pwned",))


def test_never_unpickles_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "cct-checkpoint", "x": _Evil()}, handle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_rng_state_round_trip() -> None:
    state = rng_state()
    # The legacy global NumPy RNG is exactly what the checkpoint must restore.
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))  # noqa: NPY002
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected  # noqa: NPY002


def test_weights_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_weights(path, {"a": torch.ones(2, 2)}, {"model_config": "{}"})
    tensors, meta = load_weights(path)
    assert torch.equal(tensors["a"], torch.ones(2, 2))
    assert meta == {"model_config": "{}"}


def test_atomic_text_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    """The one writer of the files a user keeps (configs, metrics, reports): a failed write leaves the old
    file and no temporary; a good one replaces it, with mode 0666 less the umask, parents created."""
    path = tmp_path / "run" / "metrics.json"
    atomic_write_text(path, '{"miou": 0.5}\n')
    assert path.read_text() == '{"miou": 0.5}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    def broken(tmp: Path) -> None:
        tmp.write_text('{"mi')
        raise KeyboardInterrupt  # a kill midway, as Ctrl-C raises it

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_text() == '{"miou": 0.5}\n'
    assert sorted(os.listdir(path.parent)) == ["metrics.json"]
    atomic_write_text(path, "a,b\r\n1,2\r\n", newline="")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"  # csv's line ends kept as they are
