"""Small private helpers shared by the loss modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype losses are computed in: float32 for half / bfloat16 inputs, float64 stays float64."""
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point logits, got {x.dtype}")
    return torch.promote_types(x.dtype, torch.float32)


@contextlib.contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    """Disable autocast for ``device_type`` (losses are computed in float32 explicitly)."""
    if device_type in ("cpu", "cuda"):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:  # pragma: no cover - other backends: nothing to disable
        yield


def as_tensor_list(x: Tensor | Sequence[Tensor], name: str) -> list[Tensor]:
    """A single tensor or a non-empty list / tuple of tensors -> list of tensors."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"{name} must be a tensor or a non-empty list of tensors, got an empty sequence")
        for i, t in enumerate(x):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")
        return list(x)
    raise TypeError(f"{name} must be a tensor or a list / tuple of tensors, got {type(x).__name__}")


def safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 when ``den == 0`` (keeps the graph; no NaN when nothing is counted)."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


def check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value
