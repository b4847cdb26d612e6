"""The common base class of the module wrappers."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import nn

__all__ = ["Perturbation", "PerturbationInputs"]

PerturbationInputs = Literal["features", "prediction", "decoder"]


class Perturbation(nn.Module):
    """Base class of the perturbation modules.

    ``inputs`` tells a model what ``forward`` needs besides the features ``z``, so that it can dispatch
    generically:

    - ``"features"``: ``forward(z)``
    - ``"prediction"``: ``forward(z, pred)`` with ``pred`` the main decoder's logits
    - ``"decoder"``: ``forward(z, decoder, target)`` with the auxiliary decoder and the main logits

    The wrappers always perturb, in training and in eval mode alike: the caller applies them to the
    unlabeled batch only (CCT), so there is nothing to switch off at inference.
    """

    inputs: ClassVar[PerturbationInputs] = "features"
