"""Obj-Msk and Con-Msk: mask the detected objects, or their context, guided by the main prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import (
    DEFAULT_IGNORE,
    _as_background,
    _as_ignore,
    _check_features,
    _check_generator,
    _check_prediction,
    _classes_and_objects,
)

__all__ = ["ContextMask", "ObjectMask", "context_mask", "object_mask"]


def _objects(
    fn: str,
    z: torch.Tensor,
    pred: torch.Tensor,
    background: Sequence[int] | int,
    ignore: object,
    generator: object,
) -> torch.Tensor:
    _check_features(z, fn)
    _check_prediction(fn, z, pred)
    _check_generator(fn, generator)
    size = (int(z.shape[-2]), int(z.shape[-1]))
    return _classes_and_objects(pred, size, background, _as_ignore(fn, ignore))[1].to(z.device)[:, None]


def object_mask(
    z: torch.Tensor,
    pred: torch.Tensor,
    background: Sequence[int] | int = (0,),
    *,
    ignore: int | None = DEFAULT_IGNORE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero the features at the detected objects and keep the context.

    Objects are the positions where ``argmax(pred)`` is not a background class, resized to ``z``'s
    spatial size with nearest-neighbour interpolation.

    Args:
        z: features :math:`(B, D, h, w)`.
        pred: the main decoder's logits :math:`(B, C, H, W)` (any ``H, W``), or a class map
            :math:`(B, H, W)`. Not differentiated.
        background: background class indices (VOC: ``(0,)``; datasets without a background class
            pass ``()`` or their void-like classes).
        ignore: the void label of an integer class map (default 255): never an object, so
            ``object_mask`` keeps it and ``context_mask`` zeroes it like the context. ``None``: no void
            label. Does not apply to logits (their argmax is always a class).
        generator: accepted (and checked) for a call signature uniform with the random perturbations; the
            mask is deterministic, nothing is drawn.

    Returns:
        features :math:`(B, D, h, w)`, zero on objects, same dtype as ``z``.

    >>> z = torch.ones(1, 2, 2, 2)
    >>> pred = torch.tensor([[[[5.0, 0.0], [5.0, 0.0]], [[0.0, 5.0], [0.0, 5.0]]]])  # class 1 on the right
    >>> object_mask(z, pred, background=(0,))[0, 0].tolist()  # the object (right column) masked out
    [[1.0, 0.0], [1.0, 0.0]]
    """
    return torch.where(_objects("object_mask", z, pred, background, ignore, generator), z.new_zeros(()), z)


def context_mask(
    z: torch.Tensor,
    pred: torch.Tensor,
    background: Sequence[int] | int = (0,),
    *,
    ignore: int | None = DEFAULT_IGNORE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero the context (background positions) and keep the detected objects.

    The complement of :func:`object_mask`: ``object_mask(z, pred) + context_mask(z, pred) == z``.

    Args:
        z: features :math:`(B, D, h, w)`.
        pred: the main decoder's logits :math:`(B, C, H, W)` (any ``H, W``), or a class map
            :math:`(B, H, W)`.
        background: background class indices.
        ignore: the void label of an integer class map (default 255), never an object (zeroed here).
        generator: accepted for a uniform signature; nothing is drawn.

    Returns:
        features :math:`(B, D, h, w)`, zero on the context, same dtype as ``z``.

    >>> z = torch.ones(1, 2, 2, 2)
    >>> pred = torch.tensor([[[[5.0, 0.0], [5.0, 0.0]], [[0.0, 5.0], [0.0, 5.0]]]])  # class 1 on the right
    >>> context_mask(z, pred, background=(0,))[0, 0].tolist()  # the context (left column) masked out
    [[0.0, 1.0], [0.0, 1.0]]
    """
    return torch.where(_objects("context_mask", z, pred, background, ignore, generator), z, z.new_zeros(()))


class _PredictionMask(Perturbation):
    """Shared body of the two prediction-guided masks; subclasses name the function they apply."""

    inputs: ClassVar[PerturbationInputs] = "prediction"

    def __init__(
        self, background: Sequence[int] | int = (0,), *, ignore: int | None = DEFAULT_IGNORE
    ) -> None:
        super().__init__()
        self.background = _as_background(background)
        self.ignore = _as_ignore(type(self).__name__, ignore)

    def forward(
        self, z: torch.Tensor, pred: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self._mask(z, pred, generator)

    def _mask(self, z: torch.Tensor, pred: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"background={self.background}, ignore={self.ignore}"


class ObjectMask(_PredictionMask):
    r"""Module form of :func:`object_mask`: ``forward(z, pred)``, :math:`(B, D, h, w)` in and out."""

    def _mask(self, z: torch.Tensor, pred: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return object_mask(z, pred, self.background, ignore=self.ignore, generator=generator)


class ContextMask(_PredictionMask):
    r"""Module form of :func:`context_mask`: ``forward(z, pred)``, :math:`(B, D, h, w)` in and out."""

    def _mask(self, z: torch.Tensor, pred: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return context_mask(z, pred, self.background, ignore=self.ignore, generator=generator)
