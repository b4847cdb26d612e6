"""Tiny copies of the benchmarks in their exact official layouts, built in a temporary folder.

Names, folder structure, palettes and id encodings are the real ones; images are a few pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cct_train.data import default_palette

VOC_TRAIN = ["2007_000032", "2007_000039", "2007_000063", "2007_000068", "2007_000121", "2007_000170"]
VOC_VAL = ["2007_000033", "2007_000042"]
SBD_ONLY = ["2008_000002", "2008_000003", "2008_000007", "2008_000008"]
VOC_SIZES = [(20, 24), (24, 20), (18, 22)]


def _jpeg(path: Path, height: int, width: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=90)


def voc_mask(index: int, height: int, width: int) -> np.ndarray:
    """Background, one object of class (index % 20) + 1, and a void (255) border around it."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[3:12, 4:14] = 255
    mask[4:11, 5:13] = index % 20 + 1
    return mask


def _palette_png(path: Path, mask: np.ndarray) -> None:
    """A P-mode PNG with the VOC colour map, as in SegmentationClass/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask, mode="P")
    image.putpalette([c for rgb in default_palette(256) for c in rgb])
    image.save(path)


def _index_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask, mode="L").save(path)


def make_voc(root: Path, *, aug: bool = True, extra_train: int = 0) -> Path:
    """``root/VOCdevkit/VOC2012`` with JPEGImages, SegmentationClass (palette PNGs), ImageSets lists and,
    with ``aug``, SegmentationClassAug (index PNGs) for VOC train + val + SBD-only ids."""
    voc = root / "VOCdevkit" / "VOC2012"
    train = VOC_TRAIN + [f"2009_{i:06d}" for i in range(extra_train)]
    for i, name in enumerate(train + VOC_VAL + SBD_ONLY):
        height, width = VOC_SIZES[i % len(VOC_SIZES)]
        _jpeg(voc / "JPEGImages" / f"{name}.jpg", height, width, i)
        mask = voc_mask(i, height, width)
        if name not in SBD_ONLY:
            _palette_png(voc / "SegmentationClass" / f"{name}.png", mask)
        if aug:
            _index_png(voc / "SegmentationClassAug" / f"{name}.png", mask)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (lists / "val.txt").write_text("".join(f"{n}\n" for n in VOC_VAL))
    (lists / "trainval.txt").write_text("".join(f"{n}\n" for n in sorted(train + VOC_VAL)))
    return root


CITYSCAPES = {
    "train": [
        ("aachen", "aachen_000000_000019"),
        ("aachen", "aachen_000001_000019"),
        ("bochum", "bochum_000000_000313"),
    ],
    "val": [("frankfurt", "frankfurt_000000_000294"), ("lindau", "lindau_000000_000019")],
}


def cityscapes_label_ids(height: int, width: int) -> np.ndarray:
    """labelIds covering road 7, sidewalk 8, parking 9 (void), ego vehicle 1, car 26, bicycle 33, sky 23."""
    ids = np.zeros((height, width), dtype=np.uint8)
    ids[:4] = 23
    ids[4:8, :] = 7
    ids[4:8, : width // 2] = 8
    ids[8:10] = 9
    ids[10:12] = 26
    ids[12:14] = 33
    ids[14:] = 1
    return ids


def make_cityscapes(root: Path, height: int = 16, width: int = 32) -> Path:
    for split, entries in CITYSCAPES.items():
        for i, (city, name) in enumerate(entries):
            _jpeg_png = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
            _jpeg_png.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(_jpeg_png)
            ids = cityscapes_label_ids(height, width)
            _index_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", ids)
            # The other gtFine files of the release, which the loader must not pick up.
            _index_png(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", ids)
            colour = root / "gtFine" / split / city / f"{name}_gtFine_color.png"
            Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(colour)
    return root


def sunrgbd_labels(height: int, width: int) -> np.ndarray:
    """0 (void), wall 1, door 8, television 25, bag 37, books 23 in bands."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for band, value in enumerate([0, 1, 8, 25, 37, 23]):
        labels[band * 3 : band * 3 + 3] = value
    return labels


def make_sunrgbd(root: Path, n_train: int = 3, n_test: int = 2) -> Path:
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(1, count + 1):
            _jpeg(root / f"SUNRGBD-{split}_images" / f"img-{i:06d}.jpg", 18, 24, i)
            number = i + (5050 if split == "train" else 0)
            _index_png(root / "sunrgbd_train_test_labels" / f"img-{number:06d}.png", sunrgbd_labels(18, 24))
    return root


def make_camvid(root: Path, n_train: int = 12, n_val: int = 3, height: int = 24, width: int = 32) -> Path:
    """The SegNet layout: train/, trainannot/ (index PNGs 0..10, 11 = void) and the *.txt lists."""
    for split, count in (("train", n_train), ("val", n_val), ("test", 2)):
        lines = []
        for i in range(count):
            name = f"0001TP_{i:06d}.png"
            image = root / split / name
            image.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(image)
            mask = (np.arange(height * width).reshape(height, width) // 37 % 12).astype(np.uint8)
            _index_png(root / f"{split}annot" / name, mask)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root
