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

__version__ = "0.4.0"

_EXPORTS = {
    "build_encoder": "cct_train.models.encoders",
    "list_encoders": "cct_train.models.encoders",
    "Encoder": "cct_train.models.encoders",
    "CCTModel": "cct_train.models.cct",
    "MultiDomainCCT": "cct_train.models.multidomain",
    "PSPModule": "cct_train.models.decoders",
    "UpsampleDecoder": "cct_train.models.decoders",
    "Config": "cct_train.config",
    "ConfigError": "cct_train.config",
    "load_config": "cct_train.config",
    "PAPER_PERTURBATIONS": "cct_train.config",
    "Trainer": "cct_train.engine.trainer",
    "build_model": "cct_train.models.factory",
    "evaluate": "cct_train.eval.evaluate",
    "load_model": "cct_train.eval.inference",
    "predict_folder": "cct_train.eval.inference",
    "ConfusionMatrix": "cct_train.eval.metrics",
    "save_checkpoint": "cct_train.common.checkpoint",
    "load_checkpoint": "cct_train.common.checkpoint",
    "CheckpointError": "cct_train.common.checkpoint",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cct_train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
