"""The ImageNet statistics most pretrained backbones expect (torchvision, smp, most timm models), in [0, 1]
units: the one definition, for the models' default input normalisation, the data's ``Normalize`` and the CAM
classifier's."""

from __future__ import annotations

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
