"""Name -> class registry of the perturbations and a builder."""

from __future__ import annotations

from typing import Any

from cct_perturb._base import Perturbation
from cct_perturb.cutout import GuidedCutout
from cct_perturb.drop import FeatureDrop, SpatialDropout
from cct_perturb.masks import ContextMask, ObjectMask
from cct_perturb.noise import FeatureNoise
from cct_perturb.vat import VAT

__all__ = ["PERTURBATIONS", "create_perturbation"]

PERTURBATIONS: dict[str, type[Perturbation]] = {
    "feature_noise": FeatureNoise,
    "feature_drop": FeatureDrop,
    "dropout": SpatialDropout,
    "object_mask": ObjectMask,
    "context_mask": ContextMask,
    "guided_cutout": GuidedCutout,
    "vat": VAT,
}


def create_perturbation(name: str, **kwargs: Any) -> Perturbation:
    """Build the perturbation module registered as ``name`` with the constructor arguments ``kwargs``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    try:
        cls = PERTURBATIONS[name]
    except KeyError:
        known = ", ".join(sorted(PERTURBATIONS))
        raise ValueError(f"unknown perturbation {name!r}; known perturbations: {known}") from None
    return cls(**kwargs)
