"""Data for CCT: datasets (CPU decoding), splits, batched on-device augmentation, loaders, demo scenes.

Samples are dicts ``{"image": uint8 (3, H, W), "mask": int64 (H, W), "name": str}`` (no ``"mask"`` when
unlabeled); ignored mask pixels are 255 everywhere.
"""

from cct_train.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    SegmentationAugment,
    random_scale_crop,
    to_float_image,
)
from cct_train.data.base import (
    IGNORE_INDEX,
    IMAGE_EXTENSIONS,
    ImageDataset,
    Item,
    Sample,
    SegmentationDataset,
    default_palette,
    map_rgb_mask,
)
from cct_train.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE, CamVid
from cct_train.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, LABEL_ID_TO_TRAIN_ID, Cityscapes
from cct_train.data.datasets import DATASETS, build_dataset
from cct_train.data.folder import FolderDataset
from cct_train.data.horses import HORSES_CLASSES, HORSES_PALETTE, WeizmannHorses
from cct_train.data.loaders import (
    Batch,
    CropCollate,
    EpochSampler,
    InfiniteLoader,
    SampleCrop,
    SeededDataset,
    build_loader,
    collate,
    cycle,
    pad_collate,
    seed_worker,
)
from cct_train.data.splits import Split, load_split, make_split, save_split
from cct_train.data.sunrgbd import SUNRGBD, SUNRGBD_13_CLASSES, SUNRGBD_37_CLASSES, SUNRGBD_37_TO_13
from cct_train.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PALETTE,
    SyntheticScenes,
    generate_synthetic_dataset,
    render_scene,
)
from cct_train.data.unlabeled import UnlabeledFolder
from cct_train.data.voc import VOC_CLASSES, VOC_PALETTE, PascalVOC, image_level_labels

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "LABEL_ID_TO_TRAIN_ID",
    "SUNRGBD",
    "SUNRGBD_13_CLASSES",
    "SUNRGBD_37_CLASSES",
    "SUNRGBD_37_TO_13",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "Cityscapes",
    "PascalVOC",
    "image_level_labels",
    "CAMVID_CLASSES",
    "CAMVID_PALETTE",
    "DATASETS",
    "HORSES_CLASSES",
    "HORSES_PALETTE",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_PALETTE",
    "Batch",
    "CamVid",
    "CropCollate",
    "EpochSampler",
    "FolderDataset",
    "ImageDataset",
    "InfiniteLoader",
    "Item",
    "Normalize",
    "Sample",
    "SampleCrop",
    "SeededDataset",
    "SegmentationAugment",
    "SegmentationDataset",
    "Split",
    "SyntheticScenes",
    "UnlabeledFolder",
    "WeizmannHorses",
    "build_dataset",
    "build_loader",
    "collate",
    "cycle",
    "default_palette",
    "generate_synthetic_dataset",
    "load_split",
    "make_split",
    "pad_collate",
    "random_scale_crop",
    "map_rgb_mask",
    "render_scene",
    "save_split",
    "seed_worker",
    "to_float_image",
]
