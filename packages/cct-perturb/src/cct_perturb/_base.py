"""The common base class of the module wrappers."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

__all__ = ["Perturbation", "PerturbationInputs"]

PerturbationInputs = Literal["features", "prediction", "decoder"]

_FORWARD_SIGNATURES: dict[str, str] = {
    "features": "forward(z, *, generator=None)",
    "prediction": "forward(z, pred, *, generator=None)",
    "decoder": "forward(z, decoder, target=None, *, generator=None)",
}


class Perturbation(nn.Module):
    """Base class of the perturbation modules.

    ``inputs`` tells a model what ``forward`` needs besides the features ``z``, so that it can dispatch
    generically:

    - ``"features"``: ``forward(z)``
    - ``"prediction"``: ``forward(z, pred)`` with ``pred`` the main decoder's logits
    - ``"decoder"``: ``forward(z, decoder, target)`` with the auxiliary decoder and the main logits. As for
      I-VAT, ``decoder`` may be any callable ``z -> logits`` whose pixels come in another order (cct-train's
      fused path hands its decoder as GEMMs in sub-pixel order), with ``target`` in that same order: read
      them as a pair, e.g. a loss summed over pixels. One whose ``target`` attribute is ``"decoder"``
      (VAT's default: its own decoder's clean prediction) reads no ``target`` and may be handed none.

    That is all a model needs to know of a perturbation: a new one is its module, its entry in
    :data:`~cct_perturb.PERTURBATIONS` and its test.

    The generator is keyword-only everywhere (``module(z, generator=g)``); one passed positionally is a
    TypeError that says so, as the functions do, rather than Python's bare "forward() takes 2 positional
    arguments but 3 were given".

    The wrappers always perturb, in training and in eval mode alike: the caller applies them to the
    unlabeled batch only (CCT), so there is nothing to switch off at inference.
    """

    inputs: ClassVar[PerturbationInputs] = "features"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for arg in args:
            if isinstance(arg, torch.Generator):
                name = type(self).__name__
                raise TypeError(
                    f"{name}: pass a generator as generator= ({name} takes "
                    f"{_FORWARD_SIGNATURES.get(self.inputs, 'forward(z, ...)')}), got one positionally"
                )
        return super().__call__(*args, **kwargs)
