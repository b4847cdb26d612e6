"""Name -> class registry of the perturbations and a builder."""

from __future__ import annotations

from typing import Any

from cct_perturb._base import Perturbation
from cct_perturb.cutout import GuidedCutout
from cct_perturb.drop import FeatureDrop, SpatialDropout
from cct_perturb.masks import ContextMask, ObjectMask
from cct_perturb.noise import FeatureNoise
from cct_perturb.vat import VAT

__all__ = ["ALIASES", "PAPER_DECODERS", "PERTURBATIONS", "create_perturbation"]

#: Other names that resolve to a registered one: each function's own name where it differs from the
#: registry name (``spatial_dropout`` -> ``dropout``). They work for lookups (``PERTURBATIONS[name]``,
#: ``name in PERTURBATIONS``, ``create_perturbation``) but are not listed by ``keys()`` / iteration, which
#: stay the seven names of the paper.
ALIASES: dict[str, str] = {"spatial_dropout": "dropout"}


class _Registry(dict[str, type[Perturbation]]):
    """A name -> class dict whose lookups also accept :data:`ALIASES`."""

    def __missing__(self, key: str) -> type[Perturbation]:
        if isinstance(key, str) and key in ALIASES:
            return self[ALIASES[key]]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and ALIASES.get(key) in self.keys())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            return self[key]
        return default


PERTURBATIONS: dict[str, type[Perturbation]] = _Registry(
    {
        "feature_noise": FeatureNoise,
        "feature_drop": FeatureDrop,
        "dropout": SpatialDropout,
        "object_mask": ObjectMask,
        "context_mask": ContextMask,
        "guided_cutout": GuidedCutout,
        "vat": VAT,
    }
)


#: The paper's final "CCT" setting (Ouali et al. 2020, 4.2): K auxiliary decoders per perturbation, 30 in
#: all, in the order a model builds them. The one source of these counts: cct-train's defaults, bench
#: workloads and study presets read it.
PAPER_DECODERS: dict[str, int] = {
    "feature_noise": 6,
    "feature_drop": 6,
    "guided_cutout": 6,
    "dropout": 6,
    "context_mask": 2,
    "object_mask": 2,
    "vat": 2,
}


def create_perturbation(name: str, **kwargs: Any) -> Perturbation:
    """Build the perturbation module registered as ``name`` (or an alias) with the arguments ``kwargs``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones and the aliases).

    >>> create_perturbation("feature_noise", uniform_range=0.2).uniform_range
    0.2
    >>> type(create_perturbation("spatial_dropout")).__name__  # an alias of "dropout"
    'SpatialDropout'
    """
    try:
        cls = PERTURBATIONS[name]
    except KeyError:
        known = ", ".join(sorted(PERTURBATIONS))
        aliases = ", ".join(f"{a} -> {n}" for a, n in sorted(ALIASES.items()))
        raise ValueError(
            f"unknown perturbation {name!r}; known perturbations: {known} (aliases: {aliases})"
        ) from None
    return cls(**kwargs)
