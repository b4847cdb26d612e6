"""Checkpoints written atomically and loaded safely.

- Atomic (:func:`cct_train.common.atomic.atomic_write`): the file is written to a temporary name in the same
  directory, flushed and fsync'ed, then moved over the old one with os.replace. A kill at any moment leaves
  either the old or the new checkpoint whole.
- Safe: only tensors and plain Python values are stored, and loading uses torch.load(weights_only=True), so
  a checkpoint can never execute code. Weights for inference are also exported as .safetensors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cct_train.common.atomic import atomic_write

FORMAT = "cct-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not one of ours; the message names the file."""


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
    atomic_write(path, lambda tmp: torch.save(data, tmp))


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
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


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
