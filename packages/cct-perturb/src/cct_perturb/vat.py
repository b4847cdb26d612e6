"""I-VAT: virtual adversarial perturbation of the features through an auxiliary decoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import _check_features, l2_normalize_per_sample

__all__ = ["VAT", "vat", "vat_direction"]

Decoder = Callable[[torch.Tensor], torch.Tensor]


def _kl_to_target(logits: torch.Tensor, target_prob: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) up to a constant, in float32, summed over classes and pixels.

    The target's entropy does not depend on the decoder's input, so only the cross-entropy
    ``-sum(p * log q)`` is computed (same gradient, half the work on large predictions). Summed rather
    than averaged: the scale does not matter (the gradient is normalised) and larger values keep the
    backward pass through a float16 decoder away from underflow.
    """
    if logits.shape[-2:] != target_prob.shape[-2:]:
        logits = F.interpolate(
            logits.float(), size=target_prob.shape[-2:], mode="bilinear", align_corners=False
        )
    log_q = F.log_softmax(logits.float(), dim=1)
    return -(target_prob * log_q).sum()


def vat_direction(
    z: torch.Tensor,
    decoder: Decoder,
    target: torch.Tensor,
    xi: float = 1e-6,
    iterations: int = 1,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The adversarial direction of :func:`vat`, unit L2 norm per sample, float32, detached.

    Args:
        z: features :math:`(B, D, h, w)`.
        decoder: the auxiliary decoder, :math:`(B, D, h, w) \to (B, C, H', W')` logits.
        target: the main decoder's logits :math:`(B, C, H, W)`; treated as a constant.
        xi: size of the finite-difference step of the power iteration.
        iterations: power iterations.
        generator: optional generator on ``z.device`` for the random start.

    Returns:
        direction :math:`(B, D, h, w)`, float32, norm 1 per sample, no graph.
    """
    _check_features(z)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    device_type = z.device.type
    z_const = z.detach().float()
    start = torch.rand(z.shape, generator=generator, device=z.device, dtype=torch.float32) - 0.5
    start = l2_normalize_per_sample(start)
    d = start
    with torch.enable_grad():
        with torch.autocast(device_type=device_type, enabled=False):
            target_prob = F.softmax(target.detach().float(), dim=1)
        for _ in range(iterations):
            d_var = d.detach().requires_grad_(True)
            # z + xi * d in float32 (xi = 1e-6 vanishes in bf16), cast back to what the decoder expects.
            logits = decoder((z_const + xi * d_var).to(z.dtype))
            with torch.autocast(device_type=device_type, enabled=False):
                loss = _kl_to_target(logits, target_prob)
            (grad,) = torch.autograd.grad(loss, [d_var], allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(d_var)
            # A sample whose gradient is exactly zero keeps the previous direction (norm stays 1).
            d = l2_normalize_per_sample(grad, fallback=d)
    return d.detach()


def vat(
    z: torch.Tensor,
    decoder: Decoder,
    target: torch.Tensor,
    xi: float = 1e-6,
    eps: float = 2.0,
    iterations: int = 1,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Virtual adversarial perturbation of ``z`` through an auxiliary decoder (I-VAT).

    ``d ~ U(-0.5, 0.5)`` normalised per sample (L2 over ``D, h, w``); each power iteration takes the
    gradient of :math:`KL(\mathrm{softmax}(target) \,\|\, \mathrm{softmax}(decoder(z + \xi d)))` with
    respect to ``d`` only (``torch.autograd.grad``: no parameter's ``.grad`` is created or changed, every
    ``.grad`` found stays as it was) and normalises it; then ``r_adv = eps * d`` and the result is
    ``z + r_adv``. ``r_adv`` is a constant: the search builds no graph into ``z`` or the decoder, while the
    returned tensor keeps ``z``'s own graph (the caller's loss still reaches the encoder through ``z``).
    :math:`\|r_{adv}\| = eps` per sample (exactly, up to rounding to ``z.dtype``): the gradient is scaled
    by its largest absolute value before dividing by its norm, and a zero gradient keeps the random
    direction, so there is never a NaN.

    The KL is computed in float32 with autocast disabled, so this works inside ``torch.autocast``; the
    decoder itself runs under whatever autocast state the caller set. When the decoder's output and
    ``target`` differ in spatial size, the decoder's output is resized to ``target``'s size (bilinear,
    ``align_corners=False``). The decoder's train/eval mode is not touched (note that a decoder with
    BatchNorm in train mode updates its running statistics during the search; CCT's decoders have none).
    Inside DDP, pass the unwrapped auxiliary decoder (``ddp_model.module.aux_decoder``), not the DDP
    wrapper, so that the extra forward does not disturb DDP's gradient bookkeeping.

    Args:
        z: features :math:`(B, D, h, w)`, with or without ``requires_grad``.
        decoder: the auxiliary decoder, any callable :math:`(B, D, h, w) \to (B, C, H', W')` logits.
        target: the main decoder's logits :math:`(B, C, H, W)`; detached inside.
        xi: power-iteration step (original config: 1e-6).
        eps: norm of the perturbation per sample (original config: 2.0).
        iterations: power iterations (original config: 1).
        generator: optional generator on ``z.device`` for the random start.

    Returns:
        perturbed features :math:`(B, D, h, w)`, same dtype as ``z``.
    """
    d = vat_direction(z, decoder, target, xi, iterations, generator=generator)
    r_adv = (float(eps) * d).to(z.dtype)
    return z + r_adv


class VAT(Perturbation):
    r"""Module form of :func:`vat`: ``forward(z, decoder, target)``, :math:`(B, D, h, w)` in and out.

    The decoder is passed at call time (each auxiliary decoder perturbs through itself); it is not
    registered as a submodule.
    """

    inputs: ClassVar[PerturbationInputs] = "decoder"

    def __init__(self, xi: float = 1e-6, eps: float = 2.0, iterations: int = 1) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.xi = float(xi)
        self.eps = float(eps)
        self.iterations = int(iterations)

    def forward(
        self,
        z: torch.Tensor,
        decoder: Decoder,
        target: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return vat(z, decoder, target, self.xi, self.eps, self.iterations, generator=generator)

    def extra_repr(self) -> str:
        return f"xi={self.xi}, eps={self.eps}, iterations={self.iterations}"
