"""cct_train: Cross-Consistency Training for any timm / segmentation-models-pytorch backbone.

    from cct_train import CCTModel, build_encoder, load_config, Trainer

    model = CCTModel("timm:resnet50", num_classes=11)           # the paper's 30 auxiliary decoders
    trainer = Trainer(load_config("configs/camvid-cct.yaml", ["data.root=/data/camvid"]))
    trainer.fit()

Public names are imported lazily, so `cct --help` does not pay for torch, timm and accelerate.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "build_encoder": "cct_train.encoders",
    "list_encoders": "cct_train.encoders",
    "Encoder": "cct_train.encoders",
    "CCTModel": "cct_train.model",
    "MultiDomainCCT": "cct_train.multidomain",
    "PSPModule": "cct_train.decoders",
    "UpsampleDecoder": "cct_train.decoders",
    "Config": "cct_train.config",
    "ConfigError": "cct_train.config",
    "load_config": "cct_train.config",
    "PAPER_PERTURBATIONS": "cct_train.config",
    "Trainer": "cct_train.trainer",
    "build_model": "cct_train.trainer",
    "evaluate": "cct_train.evaluate",
    "load_model": "cct_train.inference",
    "predict_folder": "cct_train.inference",
    "ConfusionMatrix": "cct_train.metrics",
    "save_checkpoint": "cct_train.checkpoint",
    "load_checkpoint": "cct_train.checkpoint",
    "CheckpointError": "cct_train.checkpoint",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cct_train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
