"""The dataset registry: name -> class, and ``build_dataset(name, **kwargs)``."""

from __future__ import annotations

from typing import Any

from cct_train.data.base import ImageDataset
from cct_train.data.camvid import CamVid
from cct_train.data.cityscapes import Cityscapes
from cct_train.data.folder import FolderDataset
from cct_train.data.horses import WeizmannHorses
from cct_train.data.sunrgbd import SUNRGBD
from cct_train.data.synthetic import SyntheticScenes
from cct_train.data.unlabeled import UnlabeledFolder
from cct_train.data.voc import PascalVOC

DATASETS: dict[str, type[ImageDataset]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "folder": FolderDataset,
    "horses": WeizmannHorses,
    "unlabeled": UnlabeledFolder,
    "synthetic": SyntheticScenes,
    "voc": PascalVOC,
    "sunrgbd": SUNRGBD,
}
"""Dataset classes by name (``build_dataset`` looks names up case-insensitively)."""


def build_dataset(name: str, **kwargs: Any) -> ImageDataset:
    """Instantiate ``DATASETS[name](**kwargs)``; an unknown name raises ValueError listing the known ones."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key](**kwargs)
