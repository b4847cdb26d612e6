"""Files written whole or not at all: the one writer of every file a user keeps (checkpoints, weights,
configs, metrics, reports, split lists).

The content goes to a new temporary file beside the target (``.<name>.<random>.tmp``, the name
:func:`cct_train.common.rundir.partial_files` looks for), is flushed and fsync'ed, then moved over the target
with ``os.replace``, and the directory is fsync'ed so that the rename itself survives a power loss. A kill at
any moment leaves either the old file or the new one whole, and a failed write leaves no temporary file.
The file gets mode 0666 less the umask, as ``open`` would give it.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "scores.json"
    >>> atomic_write_text(path, '{"miou": 0.5}')
    >>> path.read_text()
    '{"miou": 0.5}'
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]

#: How torch.save and safetensors report a write that failed (a full disk, a file-size limit): as a
#: RuntimeError or SafetensorError, not an OSError, e.g. "[enforce fail at inline_container.cc:672] .
#: unexpected pos 27332928 vs 27332816" or "I/O error: No space left on device (os error 28)".
_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed", "I/O error", "IoError")


def _write_error(path: Path, tmp: Path, error: Exception) -> OSError:
    """An OSError for a failed write of ``path`` (reported by torch / safetensors as ``error``), whose
    strerror says what happened: how much was written, how much space is free, the library's words."""
    try:
        written = tmp.stat().st_size
    except OSError:
        written = 0
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    found = re.search(r"os error (\d+)", str(error))
    code = int(found.group(1)) if found else None
    if code is None:
        # torch names no cause: a disk with (almost) nothing left is the common one.
        code = errno.ENOSPC if free is not None and free < max(written, 1 << 20) else errno.EIO
    space = "" if free is None else f", {free / 1e6:.1f} MB free"
    detail = f"{os.strerror(code)} (the write stopped after {written / 1e6:.1f} MB{space}; {error})"
    return OSError(code, detail, str(path))


def _new_temporary(path: Path) -> Path:
    """A new empty file beside ``path`` (``.<name>.<random>.tmp``), created with mode 0666 less the umask,
    as ``open`` would (``mkstemp`` makes it 0600, and a file moved into place would keep that)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which then replaces it.

    ``write`` may write its file anew (safetensors does). Parent folders are created. A write that fails
    with a library's error for a full disk or a size limit (torch.save, safetensors) is raised as an
    ``OSError`` naming ``path``, the errno and how far the write got; any failure leaves ``path`` as it was
    and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        mode = tmp.stat().st_mode & 0o777  # 0666 less the umask, as the kernel applied it
        try:
            write(tmp)
        except OSError:
            raise
        except Exception as error:
            if not any(marker in str(error) for marker in _WRITE_FAILURES):
                raise
            raise _write_error(path, tmp, error) from error
        os.chmod(tmp, mode)  # safetensors writes its file anew, as 0600
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        # fsync the directory too, so the rename itself survives a power loss.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, *, newline: str | None = None) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8; ``newline`` as for ``open``: ``""`` writes ``\\n`` as is)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    atomic_write(path, write)
