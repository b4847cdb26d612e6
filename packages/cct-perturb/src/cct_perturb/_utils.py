"""Shared helpers: the object mask derived from the main decoder's prediction, safe normalisation, checks."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import cast

import torch

__all__ = [
    "class_map",
    "l2_normalize_per_sample",
    "nearest_resize",
    "object_mask_from_prediction",
]


_SWAP_MIN_CHANNELS = 64


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_features(z: torch.Tensor, fn: str = "") -> None:
    where = f"{fn}: " if fn else ""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{where}`z` must be a features tensor (B, D, h, w), got {_describe(z)}")
    if z.ndim != 4:
        raise ValueError(f"{where}expected features z of shape (B, D, h, w), got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{where}`z` must be floating-point features (B, D, h, w), got {_describe(z)}")


def _check_number(fn: str, name: str, value: object) -> float:
    """A real number parameter; a generator passed positionally gets told to use ``generator=``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = " (pass a generator as generator=)" if isinstance(value, torch.Generator) else ""
        raise TypeError(f"{fn}: `{name}` must be a number, got {_describe(value)}{hint}")
    return float(value)


def _check_generator(fn: str, generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: `generator` must be a torch.Generator or None, got {_describe(generator)}")


def _check_prediction(fn: str, z: torch.Tensor, pred: object) -> None:
    """``pred``: logits (B, C, H, W) or an integer class map (B, H, W) with z's batch size; not z swapped."""
    if not isinstance(pred, torch.Tensor):
        raise TypeError(
            f"{fn}: `pred` must be the main decoder's logits (B, C, H, W) or an integer class map (B, H, W), "
            f"got {_describe(pred)}; the order is {fn}(z, pred)"
        )
    if pred.ndim == 3:
        if pred.is_floating_point():
            raise TypeError(
                f"{fn}: a 3-d `pred` must be an integer class map (B, H, W), got {_describe(pred)}"
            )
    elif pred.ndim == 4:
        if not pred.is_floating_point():
            raise TypeError(
                f"{fn}: a 4-d `pred` must be floating-point logits (B, C, H, W), got {_describe(pred)}"
            )
        # Features have hundreds of channels D, a prediction C classes at the input's (larger) size: a
        # "prediction" smaller than z in both dimensions, with >= 64 channels and more than z, is almost
        # surely z itself (object_mask(pred, z)).
        smaller = pred.shape[-2] < z.shape[-2] and pred.shape[-1] < z.shape[-1]
        if smaller and pred.shape[1] > z.shape[1] and pred.shape[1] >= _SWAP_MIN_CHANNELS:
            raise ValueError(
                f"{fn}: `pred` {tuple(pred.shape)} is smaller than `z` {tuple(z.shape)} and has more channels: "
                f"the arguments look swapped; the order is {fn}(z, pred) with z (B, D, h, w) the features and "
                "pred (B, C, H, W) the main decoder's logits"
            )
    else:
        raise ValueError(
            f"{fn}: `pred` must be logits (B, C, H, W) or a class map (B, H, W), got shape {tuple(pred.shape)}"
        )
    if pred.shape[0] != z.shape[0]:
        raise ValueError(f"{fn}: batch sizes differ: z has {z.shape[0]}, pred has {pred.shape[0]}")


def _as_background(background: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(background, int) and not isinstance(background, bool):
        return (background,)
    if isinstance(background, torch.Generator | str | bytes) or not hasattr(background, "__iter__"):
        hint = " (pass a generator as generator=)" if isinstance(background, torch.Generator) else ""
        raise TypeError(
            f"`background` must be a class index or a sequence of class indices, got {_describe(background)}{hint}"
        )
    out = []
    for c in cast(Iterable[object], background):
        try:
            if isinstance(c, bool):
                raise TypeError
            out.append(operator.index(c))  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"`background` must hold integer class indices, got {c!r}") from None
    return tuple(out)


def _nearest_index(src: int, dst: int, device: torch.device) -> torch.Tensor:
    """Source indices of ``F.interpolate(mode="nearest")`` along one axis (same float32 arithmetic)."""
    scale = torch.tensor(src / dst, dtype=torch.float32)
    idx = torch.floor(torch.arange(dst, dtype=torch.float32) * scale).long().clamp_(max=src - 1)
    return idx.to(device)


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    r"""Nearest-neighbour resize of the last two dimensions, equal to ``F.interpolate(mode="nearest")``.

    Implemented as two ``index_select`` calls: it only reads the selected rows and columns, works for
    any dtype (integer class maps included) and avoids the full copy that ``upsample_nearest2d`` makes
    of a large input on the CPU.

    Args:
        x: tensor :math:`(*, H, W)`.
        size: output size ``(h, w)``.

    Returns:
        tensor :math:`(*, h, w)`, same dtype and device.
    """
    big_h, big_w = int(x.shape[-2]), int(x.shape[-1])
    h, w = int(size[0]), int(size[1])
    if (big_h, big_w) == (h, w):
        return x
    rows = _nearest_index(big_h, h, x.device)
    cols = _nearest_index(big_w, w, x.device)
    if x.ndim >= 2 and x.stride(-1) == 1 and x.stride(-2) == big_w:
        # One gather over the flattened plane: reads only the h * w selected pixels.
        flat = (rows[:, None] * big_w + cols[None, :]).view(-1)
        return x.flatten(-2).index_select(-1, flat).unflatten(-1, (h, w))
    return x.index_select(-2, rows).index_select(-1, cols)


def _argmax_classes(pred: torch.Tensor) -> torch.Tensor:
    # ``max(dim).indices`` is ``argmax(dim)`` (first maximum on ties) but several times faster on the CPU
    # when reducing over a strided class dimension.
    return pred.max(dim=1).indices


def class_map(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    r"""Per-pixel class of a prediction, resized to ``size`` with nearest-neighbour interpolation.

    Equal to ``F.interpolate(pred.argmax(1)[:, None].float(), size, mode="nearest")[:, 0].long()``,
    but when the prediction is larger than ``size`` the (exact) nearest resize is done first and the
    argmax second, which reads ``h * w`` instead of ``H * W`` pixels per class.

    Args:
        pred: logits or scores :math:`(B, C, H, W)` (any floating dtype), or an integer class map
            :math:`(B, H, W)`.
        size: target spatial size ``(h, w)``.

    Returns:
        class indices :math:`(B, h, w)`, ``torch.long``, on ``pred.device``.
    """
    pred = pred.detach()
    h, w = int(size[0]), int(size[1])
    if pred.ndim == 3:
        if pred.is_floating_point():
            raise ValueError("a 3-d `pred` must be an integer class map (B, H, W)")
        return nearest_resize(pred.long(), (h, w))
    if pred.ndim != 4:
        raise ValueError(f"expected `pred` of shape (B, C, H, W) or (B, H, W), got {tuple(pred.shape)}")
    big_h, big_w = pred.shape[-2:]
    if big_h * big_w >= h * w:
        # Nearest resizing only selects pixels, so it commutes with the per-pixel argmax.
        return _argmax_classes(nearest_resize(pred, (h, w)))
    return nearest_resize(_argmax_classes(pred), (h, w))


#: The label of void pixels in integer class maps (VOC, Cityscapes, CamVid converted): never an object.
DEFAULT_IGNORE = 255


def _as_ignore(fn: str, ignore: object) -> int | None:
    if ignore is None:
        return None
    if isinstance(ignore, bool) or not isinstance(ignore, int):
        hint = " (pass a generator as generator=)" if isinstance(ignore, torch.Generator) else ""
        raise TypeError(
            f"{fn}: `ignore` must be the void label of class maps (an int, default 255) or None, "
            f"got {_describe(ignore)}{hint}"
        )
    return int(ignore)


def _classes_and_objects(
    pred: torch.Tensor,
    size: tuple[int, int],
    background: Sequence[int] | int,
    ignore: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes, objects)`` at ``size``: the class map (B, h, w) long and where it shows objects (bool)."""
    labels = class_map(pred, size)
    bg = _as_background(background)
    objects = torch.ones_like(labels, dtype=torch.bool)
    if len(bg) > 0:
        objects = ~torch.isin(labels, torch.tensor(bg, dtype=labels.dtype, device=labels.device))
    # Only a class map has void pixels: a prediction's argmax is always a class, even class 255 of a
    # model with more than 255 classes.
    if ignore is not None and pred.ndim == 3:
        objects = objects & (labels != ignore)
    return labels, objects


def object_mask_from_prediction(
    pred: torch.Tensor,
    size: tuple[int, int],
    background: Sequence[int] | int = (0,),
    *,
    ignore: int | None = DEFAULT_IGNORE,
) -> torch.Tensor:
    r"""Where the prediction sees objects: ``argmax(pred)`` not in ``background``, at ``size`` (nearest).

    Args:
        pred: logits :math:`(B, C, H, W)` of any spatial size, or a class map :math:`(B, H, W)`.
        size: spatial size ``(h, w)`` of the features the mask applies to.
        background: the background class indices (VOC: ``(0,)``); ``()`` makes every pixel an object.
        ignore: the void label of a class map (default 255): never an object, whatever ``background``
            says. ``None``: no void label. Logits are not affected (their argmax is always a class).

    Returns:
        boolean mask :math:`(B, h, w)`, ``True`` on objects.
    """
    return _classes_and_objects(pred, size, background, _as_ignore("object_mask", ignore))[1]


def l2_normalize_per_sample(x: torch.Tensor, fallback: torch.Tensor | None = None) -> torch.Tensor:
    r"""Scale each sample of ``x`` to unit L2 norm over all non-batch dimensions, safely, in float32.

    The sample is first divided by its largest absolute value (so that tiny values such as a VAT
    gradient taken with ``xi = 1e-6`` neither underflow nor get swamped by a stabilising constant), then
    by its norm. A sample that is all zeros (or has a non-finite value) becomes ``fallback``'s sample normalised the
    same way if ``fallback`` is given, else stays all zeros. Never returns NaN.

    Args:
        x: tensor :math:`(B, *)`.
        fallback: optional tensor of the same shape used for samples of ``x`` that are zero.

    Returns:
        float32 tensor :math:`(B, *)` whose samples have norm 1 (or 0, see above).
    """
    flat = x.detach().float().flatten(1)
    scale = torch.linalg.vector_norm(flat, ord=float("inf"), dim=1, keepdim=True)  # max |x|, one pass
    nonzero = torch.isfinite(scale) & (scale > 0)
    inv_scale = torch.where(nonzero, 1.0 / scale, torch.zeros_like(scale))
    flat = torch.where(nonzero, flat * inv_scale, torch.zeros((), dtype=flat.dtype, device=flat.device))
    norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    flat = flat * torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))
    if fallback is not None:
        fb = l2_normalize_per_sample(fallback).flatten(1)
        flat = torch.where(nonzero, flat, fb)
    return flat.view(x.shape)
