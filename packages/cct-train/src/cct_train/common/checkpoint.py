"""Checkpoints written atomically and loaded safely.

- Atomic: the file is written to a temporary name in the same directory, flushed and fsync'ed, then moved
  over the old one with os.replace. A kill at any moment leaves either the old or the new checkpoint whole.
- Safe: only tensors and plain Python values are stored, and loading uses torch.load(weights_only=True), so
  a checkpoint can never execute code. Weights for inference are also exported as .safetensors.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = "cct-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not one of ours; the message names the file."""


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
    as ``open`` would (``mkstemp`` makes it 0600, and a checkpoint moved into place would keep that)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
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


def rng_state() -> dict[str, Any]:
    """Every RNG a training run draws from, in a weights_only-loadable form."""
    # The legacy global NumPy RNG is what third-party augmentation code draws from, so it is saved too.
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [*list(random.getstate()[1]), random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), state["python_gauss"]))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically save a training checkpoint (model, optimizer, scheduler, step, RNG, config...)."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    _atomic_write(Path(path), lambda tmp: torch.save(data, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt zip, truncated file, foreign pickle with custom classes...
        raise CheckpointError(
            f"{path} is not a readable CCT checkpoint ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CCT checkpoint (no '{FORMAT}' marker)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer cct-train (format {data['format_version']})")
    return data


def save_weights(
    path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Export model weights as .safetensors (atomically), with string metadata such as the config."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def export_weights(
    path: str | Path,
    model: torch.nn.Module,
    config: Mapping[str, Any],
    class_names: Any,
    palette: Any,
    input_size: Any = None,
) -> None:
    """Inference weights: ``model``'s state dict as .safetensors with the metadata that ``load_model``
    reads back (``model_config``, ``class_names``, ``palette``, ``input_size``, each as JSON). The one writer
    of it. ``input_size``: the (H, W) the images were resized to in training (``data.resize``; per domain a
    ``{name: size}`` mapping), which prediction uses; None: images were used at their own size."""
    meta = {
        "model_config": json.dumps(dict(config), default=str),
        "class_names": json.dumps(class_names),
        "palette": json.dumps(palette),
        "input_size": json.dumps(input_size),
    }
    save_weights(path, model.state_dict(), meta)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({error})") from None
