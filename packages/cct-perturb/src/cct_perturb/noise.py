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
    On the CPU, ``N`` takes 65536 evenly spaced values in ``(-r, r)`` (16 random bits per element, drawn
    64 at a time: 2-3x faster than a float32 ``uniform_``, whose serial per-element loop dominated);
    elsewhere it is a float32 uniform.
    The arithmetic is done in float32 (float64 for a float64 ``z``) and the result cast back to
    ``z.dtype``; the graph to ``z`` is kept.

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
    # Half types are computed in float32 (and cast back); float64 stays float64.
    zf = z if z.dtype in (torch.float32, torch.float64) else z.float()
    if z.device.type == "cpu":
        # The CPU draws random numbers serially, one kernel iteration per element: uniform_ over z's 3.4M
        # elements (8 x 256 x 41 x 41) took 16-18 ms, 25x a Dropout2d, which draws B * D numbers. Each
        # iteration of a full-range int64 draw gives 64 random bits: split into four int16 lanes it is a
        # quarter of the iterations (2.8 ms). N = (k + 0.5) * 2r / 2^16 for k uniform in [-2^15, 2^15):
        # symmetric, |N| < r, 65536 levels over (-r, r) (float32's uniform_ has 2^24; the noise is
        # multiplied by z and often rounded to bf16's 8 bits anyway).
        n = z.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None, generator=generator)
        lanes = words.view(torch.int16)[:n].view(z.shape)
        noise = lanes + 0.5  # int16 + float -> float32, one pass
        out = torch.addcmul(zf, zf, noise, value=2.0 * r / 65536.0)
    else:
        # CUDA draws in parallel (Philox): a plain float32 uniform costs no more than the addcmul.
        noise = torch.empty(z.shape, device=z.device, dtype=torch.float32).uniform_(
            -r, r, generator=generator
        )
        out = torch.addcmul(zf, zf, noise)
    return out if out.dtype == z.dtype else out.to(z.dtype)


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
