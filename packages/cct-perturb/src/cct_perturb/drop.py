"""F-Drop (drop the most active positions) and DropOut (spatial dropout of whole channels)."""

from __future__ import annotations

from typing import ClassVar

import torch

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import _check_features, _check_generator, _check_number, _describe

__all__ = ["FeatureDrop", "SpatialDropout", "feature_drop", "spatial_dropout"]


def _check_gamma_range(gamma_range: tuple[float, float]) -> tuple[float, float]:
    if (
        isinstance(gamma_range, torch.Tensor)
        or not isinstance(gamma_range, tuple | list)
        or len(gamma_range) != 2
    ):
        hint = " (pass a generator as generator=)" if isinstance(gamma_range, torch.Generator) else ""
        raise TypeError(
            f"feature_drop: `gamma_range` must be a pair (low, high), got {_describe(gamma_range)}{hint}"
        )
    lo = _check_number("feature_drop", "gamma_range[0]", gamma_range[0])
    hi = _check_number("feature_drop", "gamma_range[1]", gamma_range[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"gamma_range must satisfy 0 <= low <= high <= 1, got {gamma_range}")
    return lo, hi


def feature_drop(
    z: torch.Tensor,
    gamma_range: tuple[float, float] = (0.6, 0.9),
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Drop the most active spatial positions of each sample.

    The channel mean of ``z`` is normalised per sample to :math:`[0, 1]` (``z'``: divided by its max for a
    non-negative map, as the original's ``max * gamma`` threshold; shifted by its min first when it has
    negative values), a threshold
    :math:`\gamma \sim U(\text{low}, \text{high})` is drawn per sample, and every position with
    :math:`z' \ge \gamma` is zeroed in all channels (positions with :math:`z' < \gamma` are kept). With the
    default range, 10-40% of the most active range is dropped. The original code drew one
    :math:`\gamma \sim U(0.7, 0.9)` per batch and thresholded at ``max * gamma``; per-sample draws are the
    default here. An all-zero map stays all zeros (no NaN); a positive constant map is dropped entirely,
    as in the original (every position is "most active").

    Args:
        z: features :math:`(B, D, h, w)`.
        gamma_range: ``(low, high)`` of the uniform threshold, within ``[0, 1]`` (paper: (0.6, 0.9)).
        generator: optional generator on ``z.device``.

    Returns:
        features :math:`(B, D, h, w)` with the dropped positions zeroed, same dtype as ``z``.

    >>> z = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> out = feature_drop(z, (0.6, 0.9), generator=torch.Generator().manual_seed(0))
    >>> out.shape, bool(out[0, 0, -1, -1] == 0), bool(out[0, 0, 0, 1] == z[0, 0, 0, 1])  # the most active dropped
    (torch.Size([1, 1, 4, 4]), True, True)
    >>> feature_drop(torch.zeros(1, 2, 3, 3)).abs().sum().item()  # all zero: all zero, no NaN
    0.0
    """
    _check_features(z, "feature_drop")
    lo, hi = _check_gamma_range(gamma_range)
    _check_generator("feature_drop", generator)
    batch = z.shape[0]
    attention = z.detach().float().mean(dim=1).flatten(1)  # (B, h*w)
    # Non-negative maps (post-ReLU features, the usual case) are divided by their max, as the original's
    # `attention < max * gamma`; a map with negative values is shifted by its min first.
    a_min = attention.amin(dim=1, keepdim=True).clamp(max=0.0)
    a_range = attention.amax(dim=1, keepdim=True) - a_min
    normalised = (attention - a_min) / torch.where(a_range > 0, a_range, torch.ones_like(a_range))
    u = torch.rand((batch, 1), generator=generator, device=z.device, dtype=torch.float32)
    gamma = lo + (hi - lo) * u
    drop = (normalised >= gamma).view(batch, 1, *z.shape[-2:])
    return torch.where(drop, z.new_zeros(()), z)


class FeatureDrop(Perturbation):
    r"""Module form of :func:`feature_drop`. Input :math:`(B, D, h, w)`, output the same shape."""

    inputs: ClassVar[PerturbationInputs] = "features"

    def __init__(self, gamma_range: tuple[float, float] = (0.6, 0.9)) -> None:
        super().__init__()
        self.gamma_range = _check_gamma_range(gamma_range)

    def forward(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return feature_drop(z, self.gamma_range, generator=generator)

    def extra_repr(self) -> str:
        return f"gamma_range={self.gamma_range}"


def _check_p(p: float) -> float:
    _check_number("spatial_dropout", "p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    return float(p)


def spatial_dropout(
    z: torch.Tensor, p: float = 0.5, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Zero whole channels, independently per sample, and rescale the rest by :math:`1 / (1 - p)`.

    Same statistics as ``nn.Dropout2d(p)`` in training mode, but always applied (it is a perturbation, not
    a regulariser) and drawn from ``generator``. ``p = 0`` returns ``z``'s values unchanged and ``p = 1``
    zeros everything.

    Args:
        z: features :math:`(B, D, h, w)`.
        p: probability of dropping a channel (original config: 0.5).
        generator: optional generator on ``z.device``.

    Returns:
        features :math:`(B, D, h, w)`, same dtype as ``z``.

    >>> out = spatial_dropout(torch.ones(2, 8, 3, 3), p=0.5, generator=torch.Generator().manual_seed(0))
    >>> sorted(set(out.flatten().tolist()))  # whole channels dropped, the rest scaled by 1 / (1 - p)
    [0.0, 2.0]
    """
    _check_features(z, "spatial_dropout")
    p = _check_p(p)
    _check_generator("spatial_dropout", generator)
    batch, channels = z.shape[:2]
    u = torch.rand((batch, channels, 1, 1), generator=generator, device=z.device, dtype=torch.float32)
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    factor = (u >= p).to(torch.float32) * scale
    return (z.float() * factor).to(z.dtype)


class SpatialDropout(Perturbation):
    r"""Module form of :func:`spatial_dropout` (applied in train and eval mode alike).

    Input :math:`(B, D, h, w)`, output the same shape.
    """

    inputs: ClassVar[PerturbationInputs] = "features"

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return spatial_dropout(z, self.p, generator=generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
