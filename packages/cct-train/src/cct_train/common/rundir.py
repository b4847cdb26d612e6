"""A run folder (``experiment.output_dir``) is one run's: a lock while a run writes into it, no finished
run replaced unless asked, and no partial files of killed runs left behind.

- :class:`RunFolderLock`: an OS file lock on ``<folder>/.cct-run.lock`` (``fcntl.flock``; ``msvcrt`` on
  Windows), taken before anything is written. The OS drops it when its process dies, however it dies, so a
  lock left by a killed run is never in the way (no pid guessing); the file records the holder (pid, host,
  start, command) for the message a second run gets. Re-entrant within a process: the CLI and the
  ``Trainer`` it builds share one hold, and in-process callers (tests, notebooks) are not refused by their
  own earlier ``Trainer``.
- :func:`finished_run`: the trained weights a folder holds (``checkpoints/last.pt``, ``best.pt``,
  ``model.safetensors``); :func:`refuse_to_replace` names them and says what to do, :func:`clear_run`
  removes them when the user asked for it (``cct train --overwrite``).
- :func:`remove_partial_files`: the ``.<name>.<random>.tmp`` files that an atomic write killed midway left.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_NAME",
    "RunFolderBusy",
    "RunFolderError",
    "RunFolderLock",
    "RunFolderOccupied",
    "clear_run",
    "finished_run",
    "partial_files",
    "refuse_to_replace",
    "remove_partial_files",
]

LOCK_NAME = ".cct-run.lock"
#: What a run writes into its folder that a new run would replace (relative to the folder).
WEIGHTS = ("checkpoints/last.pt", "checkpoints/best.pt", "model.safetensors")
#: What ``clear_run`` removes besides the weights: the old run's logs and records, so that nothing of it
#: mixes into the new one (``metrics.csv`` is appended to).
RECORDS = ("metrics.json", "config.yaml", "logs/metrics.csv", "logs/hparams.json")


class RunFolderError(RuntimeError):
    """A run cannot use its folder; the message names the folder and says what to do."""


class RunFolderBusy(RunFolderError):
    """Another live process holds the run folder's lock; the message names it."""


class RunFolderOccupied(RunFolderError):
    """The run folder holds a trained run that a new run would replace; the message says what to do."""


@dataclass
class _Hold:
    fd: int
    count: int


_held: dict[Path, _Hold] = {}
_held_guard = threading.Lock()


def _try_lock(fd: int) -> bool:
    """Take the OS lock on ``fd`` without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote into the lock file (best effort: it may be writing it)."""
    try:
        info: dict[str, Any] = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process"
    parts = [f"process {info['pid']}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    text = " ".join(parts)
    if info.get("command"):
        text += f" ({info['command']})"
    return text


class RunFolderLock:
    """The lock of one run folder. ``acquire`` raises :class:`RunFolderBusy` naming the holder when another
    process has it; ``release`` gives it back (the OS does so anyway when the process ends).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with RunFolderLock(folder) as lock:
    ...     lock.held
    True
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> RunFolderLock:
        if self.held:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            key = self.folder.resolve()
        except OSError as error:
            raise RunFolderError(
                f"experiment.output_dir {self.folder} is not a writable folder ({error.strerror or error}); "
                "choose another with --set experiment.output_dir=..."
            ) from None
        with _held_guard:
            hold = _held.get(key)
            if hold is not None:
                hold.count += 1
                self.held = True
                return self
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise RunFolderError(
                    f"cannot create the lock file {self.path} ({error.strerror or error}): make "
                    "experiment.output_dir writable or choose another with --set experiment.output_dir=..."
                ) from None
            if not _try_lock(fd):
                os.close(fd)
                raise RunFolderBusy(
                    f"experiment.output_dir {self.folder} is in use by {_holder(self.path)}: two runs "
                    "writing one folder would mix their checkpoints and logs. Wait for it to finish, stop "
                    "it, or give this run its own folder with --set experiment.output_dir=..."
                )
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500] if sys.argv else "",
            }
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode())
            _held[key] = _Hold(fd, 1)
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = self.folder.resolve()
        with _held_guard:
            hold = _held.get(key)
            if hold is None:
                return
            hold.count -= 1
            if hold.count > 0:
                return
            del _held[key]
            # The file stays (unlinking a lock file races with a process that has just opened it); its
            # record is cleared so that it names no one. Closing the descriptor drops the OS lock.
            try:
                os.ftruncate(hold.fd, 0)
            finally:
                os.close(hold.fd)

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def finished_run(folder: str | Path) -> list[Path]:
    """The trained weights in ``folder`` that a new run would replace (empty: nothing to lose)."""
    folder = Path(folder)
    return [folder / name for name in WEIGHTS if (folder / name).is_file()]


def _describe_weights(found: list[Path]) -> str:
    names = ", ".join(str(p) for p in found)
    last = next((p for p in found if p.name == "last.pt"), None)
    if last is None:
        return names
    try:
        from cct_train.common.checkpoint import load_checkpoint

        state = load_checkpoint(last)
        trained = state.get("config", {}).get("train", {}).get("iterations")
        return f"{names} (last.pt at step {state['step']}" + (f" of {trained})" if trained else ")")
    except Exception:  # an unreadable checkpoint is still the user's: name it all the same
        return names


def refuse_to_replace(folder: str | Path) -> None:
    """Raise :class:`RunFolderOccupied` when ``folder`` holds a trained run (see :func:`finished_run`)."""
    found = finished_run(folder)
    if found:
        resumable = (Path(folder) / WEIGHTS[0]).is_file()
        options = (
            "Continue it with --resume auto, give" if resumable else "It has no last.pt to continue: give"
        )
        raise RunFolderOccupied(
            f"experiment.output_dir {folder} already holds a trained run: {_describe_weights(found)}. "
            f"A new run would replace it. {options} the new run its own folder with --set "
            "experiment.output_dir=..., or pass --overwrite to replace it."
        )


def clear_run(folder: str | Path) -> list[Path]:
    """Remove the previous run's weights and records from ``folder`` (asked for with ``--overwrite``);
    returns what was removed. Other files in the folder are left alone."""
    folder = Path(folder)
    removed = []
    for name in (*WEIGHTS, *RECORDS):
        path = folder / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def partial_files(folder: str | Path) -> list[Path]:
    """Temporary files of the atomic writes of a run's weights (``.last.pt.<random>.tmp``...) in ``folder``
    and its ``checkpoints/``; no other file."""
    folder = Path(folder)
    prefixes = tuple(f".{Path(name).name}." for name in WEIGHTS)
    found: list[Path] = []
    for place in (folder, folder / "checkpoints"):
        if place.is_dir():
            found += [p for p in place.glob(".*.tmp") if p.name.startswith(prefixes) and p.is_file()]
    return sorted(found)


def remove_partial_files(folder: str | Path) -> tuple[int, int]:
    """Delete :func:`partial_files` (call it holding the folder's lock, so that no live write is among
    them); returns how many and their bytes."""
    count = size = 0
    for path in partial_files(folder):
        try:
            bytes_ = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        count += 1
        size += bytes_
    return count, size
