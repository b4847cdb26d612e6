"""F-Noise: multiplicative uniform noise on the encoder features."""

from __future__ import annotations

from typing import ClassVar

import torch

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import _check_features, _check_generator, _check_number

__all__ = ["FeatureNoise", "feature_noise"]


def feature_noise(
    z: torch.Tensor, uniform_range: float = 0.3, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Add noise proportional to each activation: :math:`\tilde z = z + z \odot N`, :math:`N \sim U(-r, r)`.

    ``N`` has the full shape of ``z``: every sample and every element draws its own value (the original
    code shared one noise tensor across the batch). Hence :math:`|\tilde z - z| \le r |z|` elementwise.
    The arithmetic is done in float32 and the result cast back to ``z.dtype``; the graph to ``z`` is kept.

    Args:
        z: features :math:`(B, D, h, w)`.
        uniform_range: ``r``, the half-width of the noise range (paper: 0.3).
        generator: optional generator on ``z.device`` for the draws.

    Returns:
        perturbed features :math:`(B, D, h, w)`, same dtype and device as ``z``.

    >>> z = torch.ones(2, 4, 3, 3)
    >>> out = feature_noise(z, 0.3, generator=torch.Generator().manual_seed(0))
    >>> out.shape, bool(((out - z).abs() <= 0.3).all())
    (torch.Size([2, 4, 3, 3]), True)
    """
    _check_features(z, "feature_noise")
    r = _check_number("feature_noise", "uniform_range", uniform_range)
    _check_generator("feature_noise", generator)
    if r < 0:
        raise ValueError(f"uniform_range must be >= 0, got {uniform_range}")
    noise = torch.empty(z.shape, device=z.device, dtype=torch.float32).uniform_(-r, r, generator=generator)
    if z.dtype == torch.float32:
        return torch.addcmul(z, z, noise)
    zf = z.float()
    return torch.addcmul(zf, zf, noise).to(z.dtype)


class FeatureNoise(Perturbation):
    r"""Module form of :func:`feature_noise`. Input :math:`(B, D, h, w)`, output the same shape."""

    inputs: ClassVar[PerturbationInputs] = "features"

    def __init__(self, uniform_range: float = 0.3) -> None:
        super().__init__()
        _check_number("FeatureNoise", "uniform_range", uniform_range)
        if uniform_range < 0:
            raise ValueError(f"uniform_range must be >= 0, got {uniform_range}")
        self.uniform_range = float(uniform_range)

    def forward(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return feature_noise(z, self.uniform_range, generator=generator)

    def extra_repr(self) -> str:
        return f"uniform_range={self.uniform_range}"
