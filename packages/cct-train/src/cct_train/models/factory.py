"""One factory from a training config to its model: one domain (`CCTModel`) or several (`MultiDomainCCT`).

The mapping from config keys to constructor arguments is written once: the shared encoder's arguments
(:func:`encoder_arguments`) and a head's (:func:`head_arguments`), for the single-domain model and for
every domain of the multi-domain one alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cct_train.models.cct import CCTModel
from cct_train.models.encoders import resolve_normalization
from cct_train.models.multidomain import MultiDomainCCT

if TYPE_CHECKING:
    from cct_train.config import Config

__all__ = ["build_model", "encoder_arguments", "head_arguments"]


def encoder_arguments(config: Config) -> dict[str, Any]:
    """The shared encoder's (and the heads' common) constructor arguments from ``model.*``."""
    model = config.model
    mean, std = resolve_normalization(model.encoder, model.mean, model.std)
    return {
        "encoder": model.encoder,
        "psp_channels": model.psp_channels,
        "output_stride": model.output_stride,
        "pretrained": model.pretrained,
        "weights": model.weights,
        "consistency": model.consistency_loss,
        "confidence": model.consistency_confidence,
        # The supervised loss's owner holds ab-CE's threshold schedule, over the run's length.
        "supervised_loss": config.train.supervised_loss,
        "abce_ramp": config.train.abce_ramp,
        "abce_iterations": config.train.iterations,
        "mean": mean,
        "std": std,
        "concat_batches": model.concat_batches,
        "decoder_final_relu": model.decoder_final_relu,
        "decoder_hidden_relu": model.decoder_hidden_relu,
    }


def head_arguments(view: Config) -> dict[str, Any]:
    """One domain's head: its auxiliary decoders (none for the supervised baseline), background classes,
    perturbation arguments and the void label its losses leave out (``data.ignore_index``), from a
    single-domain view of the config (``Config.domain_views``)."""
    return {
        "perturbations": {} if view.supervised_only else dict(view.model.perturbations),
        "background": list(view.model.background),
        "perturbation_kwargs": dict(view.model.perturbation_kwargs),
        "ignore_index": view.data.ignore_index,
    }


def build_model(config: Config, num_classes: int | Mapping[str, int]) -> CCTModel | MultiDomainCCT:
    """The CCT model (or the supervised baseline: same model, no auxiliary decoders) from a config.

    A multi-domain config (``domains``) gives a :class:`MultiDomainCCT`; ``num_classes`` is then a mapping
    domain name -> C (an int is used for every domain). A single-domain config takes C, or ``{name: C}``
    (the trainer's one-domain run).
    """
    shared = encoder_arguments(config)
    if config.multi_domain:
        heads = {
            name: {
                "num_classes": num_classes[name] if isinstance(num_classes, Mapping) else num_classes,
                **head_arguments(view),
            }
            for name, view in config.domain_views()
        }
        return MultiDomainCCT(domains=heads, **shared)
    if isinstance(num_classes, Mapping):  # {name: C} of the one domain, as for several
        if len(num_classes) != 1:
            raise TypeError("a single-domain config takes num_classes as an int or a mapping of one entry")
        (num_classes,) = num_classes.values()
    return CCTModel(num_classes=num_classes, **head_arguments(config), **shared)
