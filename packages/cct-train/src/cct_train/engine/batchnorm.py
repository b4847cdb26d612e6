"""Re-estimating BatchNorm statistics after training ("precise BN", Wu & Johnson, *Rethinking "Batch" in
BatchNorm*, 2021).

BatchNorm's running statistics are an exponential average (momentum 0.1) over the last ten or so training
batches. With the small batches of semi-supervised segmentation (4 labeled crops a step here), the
statistics a run ends with depend on which few crops those were, and so does every evaluation of the
final weights. Re-estimating them as a plain average over many training batches, with the weights
frozen, removes that draw: the measured effect on CamVid is in docs/log/research-log.md (round 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn


class _Encoding(nn.Module):
    """Adapts ``model.encode`` (where every BatchNorm of a CCT model lives: backbone and PSP) to
    :func:`torch.optim.swa_utils.update_bn`, which calls ``module(batch)``."""

    def __init__(self, model: nn.Module, encode: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self._encode = encode

    def forward(self, images: Tensor) -> Tensor:
        return self._encode(images)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[Tensor], encode: Callable[[Tensor], Tensor] | None = None
) -> None:
    """Replace the running mean / variance of every BatchNorm layer of ``model`` by their average over
    ``batches``; the weights are not touched and the training / eval mode is restored.

    model: a module with BatchNorm layers; encode: the function that runs them (default ``model.encode``,
    the encoder + PSP of :class:`~cct_train.models.cct.CCTModel`). batches: normalised images
    ``(B, 3, H, W)``, as training feeds them (augmented crops: the statistics are those of training).
    torch's :func:`~torch.optim.swa_utils.update_bn` does the work (reset, cumulative average, momenta
    restored).
    """
    fn = encode if encode is not None else cast(Callable[[Tensor], Tensor], model.encode)
    # update_bn puts everything in training mode; put back each module's own (frozen parts included).
    modes = {module: module.training for module in model.modules()}
    update_bn(batches, _Encoding(model, fn))
    for module, training in modes.items():
        module.training = training
