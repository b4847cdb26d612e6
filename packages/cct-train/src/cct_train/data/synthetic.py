"""Procedural street-like scenes for ``cct demo`` and tests: no download, deterministic given a seed.

Classes (``num_classes`` from 3 to 6 keeps a prefix): 0 sky (smooth gradient), 1 ground (textured noise),
2 road (a perspective band with lane marks), 3 circle, 4 rectangle, 5 triangle. Objects have per-image
random colours and textures (flat, stripes, noise, gradient), so colour alone does not give the class:
shape does. Random positions, sizes, rotations and occlusions, plus blur and additive noise, make a model
trained on a handful of labeled images generalise poorly, which leaves room for unlabeled consistency.

:func:`generate_synthetic_dataset` writes the :class:`~cct_train.data.folder.FolderDataset` layout::

    out_dir/images/train_0000.png   RGB uint8 (H, W, 3)
    out_dir/masks/train_0000.png    palette-mode index PNG (values are class ids)
    out_dir/train.txt, val.txt      one name per line
    out_dir/dataset.json            num_classes, class_names, palette, ignore_index, size, seed, counts
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cct_train.data.base import IGNORE_INDEX
from cct_train.data.cityscapes import CITYSCAPES_PALETTE
from cct_train.data.folder import DATASET_JSON, FolderDataset

SYNTHETIC_CLASSES: tuple[str, ...] = ("sky", "ground", "road", "circle", "rectangle", "triangle")
#: Cityscapes' colours of the nearest classes: sky, vegetation, road, person, car, traffic light.
SYNTHETIC_PALETTE: list[tuple[int, int, int]] = [CITYSCAPES_PALETTE[i] for i in (10, 8, 0, 11, 13, 6)]
_SPLIT_CODES = {"train": 0, "val": 1}


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (H, W): a coarse random grid upsampled bilinearly."""
    h, w = size
    coarse = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    ys = np.linspace(0, cells, h, dtype=np.float32)
    xs = np.linspace(0, cells, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), cells - 1)
    x0 = np.minimum(xs.astype(np.int64), cells - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy, dtype=np.float32)


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A random texture of the given base colour, float (H, W, 3) in 0..255."""
    kind = int(rng.integers(0, 4))
    base = np.broadcast_to(colour, (*yy.shape, 3)).astype(np.float32)
    if kind == 0:  # flat
        return base.copy()
    other = rng.uniform(0, 255, 3).astype(np.float32)
    if kind == 1:  # stripes
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 9.0)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * (2 * np.pi / period)
        t = (np.sin(phase) > 0).astype(np.float32)[..., None]
        return base * (1 - t) + other * t
    if kind == 2:  # speckle noise
        return base + rng.normal(0.0, 35.0, base.shape).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)  # linear gradient
    proj = np.cos(angle) * xx + np.sin(angle) * yy
    t = ((proj - proj.min()) / max(float(np.ptp(proj)), 1.0))[..., None]
    return base * (1 - t) + other * t


def _shape_region(
    rng: np.random.Generator, shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float
) -> np.ndarray:
    """Boolean (H, W) region of one object centred at (cy, cx) with radius about r."""
    angle = rng.uniform(0, 2 * np.pi)
    u = np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)
    v = -np.sin(angle) * (xx - cx) + np.cos(angle) * (yy - cy)
    if shape == "circle":
        ratio = rng.uniform(0.8, 1.25)
        return np.asarray((u / (r * ratio)) ** 2 + (v / r) ** 2 <= 1.0)
    if shape == "rectangle":
        aspect = rng.uniform(0.5, 1.6)
        return np.asarray((np.abs(u) <= r * aspect) & (np.abs(v) <= r / aspect))
    # triangle: three vertices around the centre, inside = same side of all three edges
    angles = angle + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3)
    vx = cx + 1.3 * r * np.cos(angles)
    vy = cy + 1.3 * r * np.sin(angles)
    sides = []
    for i in range(3):
        j = (i + 1) % 3
        sides.append((vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]))
    s = np.stack(sides)
    return np.asarray((s >= 0).all(axis=0) | (s <= 0).all(axis=0))


def _blur(image: np.ndarray, passes: int) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur, ``passes`` times, on float (H, W, 3) with edge replication."""
    for _ in range(passes):
        p = np.pad(image, ((1, 1), (0, 0), (0, 0)), mode="edge")
        image = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        p = np.pad(image, ((0, 0), (1, 1), (0, 0)), mode="edge")
        image = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return image


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (96, 128),
    num_classes: int = 6,
    object_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One random scene: image uint8 (H, W, 3) and mask uint8 (H, W) with values in 0..num_classes-1.

    ``object_scale`` multiplies the objects' radii (the draws are the same whatever its value)."""
    if not 3 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise ValueError(f"synthetic scenes support 3..{len(SYNTHETIC_CLASSES)} classes, got {num_classes}")
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # sky / ground split along a slightly tilted horizon
    horizon_y = rng.uniform(0.3, 0.55) * h
    horizon = horizon_y + rng.uniform(-0.12, 0.12) * (xx - w / 2)
    sky = yy < horizon
    mask = np.where(sky, 0, 1).astype(np.uint8)

    sky_top = np.array([rng.uniform(20, 120), rng.uniform(60, 170), rng.uniform(140, 255)], np.float32)
    sky_bottom = np.clip(sky_top + rng.uniform(40, 110), 0, 255)
    t = np.clip(yy / max(horizon_y, 1.0), 0, 1)[..., None]
    image = sky_top * (1 - t) + sky_bottom * t
    image = image + 6.0 * _smooth_noise(rng, size, 3)[..., None]

    ground_colour = rng.uniform(30, 200, 3).astype(np.float32)
    ground = ground_colour + 30.0 * _smooth_noise(rng, size, 8)[..., None]
    ground = ground + rng.normal(0.0, rng.uniform(12, 30), (h, w, 1)).astype(np.float32)
    image = np.where(sky[..., None], image, ground)

    # road: a band from the bottom edge to a vanishing point on the horizon
    vanish_x = rng.uniform(0.25, 0.75) * w
    bottom_x = vanish_x + rng.uniform(-0.3, 0.3) * w
    bottom_half = rng.uniform(0.2, 0.45) * w
    depth = np.clip((yy - horizon_y) / max(h - horizon_y, 1.0), 0, 1)
    centre = vanish_x + (bottom_x - vanish_x) * depth
    half = 0.01 * w + (bottom_half - 0.01 * w) * depth
    road = (~sky) & (np.abs(xx - centre) <= half) & (depth > 0.02)
    road_grey = rng.uniform(40, 150)
    road_colour = np.clip(road_grey + rng.uniform(-20, 20, 3), 0, 255).astype(np.float32)
    road_img = road_colour + 8.0 * _smooth_noise(rng, size, 6)[..., None]
    lane = (np.abs(xx - centre) <= 0.06 * half + 0.3) & (np.sin(18.0 / (depth + 0.15)) > 0.2)
    road_img = np.where(lane[..., None], np.float32(235.0), road_img)
    image = np.where(road[..., None], road_img, image)
    mask[road] = 2

    # objects: class from shape, colour and texture random per object
    shapes = ("circle", "rectangle", "triangle")[: num_classes - 3]
    if shapes:
        for _ in range(int(rng.integers(2, 7))):
            cls = int(rng.integers(0, len(shapes)))
            cy = rng.uniform(0.75 * horizon_y, h)
            cx = rng.uniform(0, w)
            scale = 0.6 + 0.8 * (cy / h)  # perspective: larger lower in the frame
            r = rng.uniform(0.06, 0.16) * h * scale * object_scale
            region = _shape_region(rng, shapes[cls], yy, xx, cy, cx, r)
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            image = np.where(region[..., None], _texture(rng, yy, xx, colour), image)
            mask[region] = 3 + cls

    # camera: contrast / brightness, blur, sensor noise
    image = (image - 128.0) * rng.uniform(0.7, 1.2) + 128.0 + rng.uniform(-25, 25)
    image = _blur(image, int(rng.integers(0, 3)))
    image = image + rng.normal(0.0, rng.uniform(2.0, 10.0), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


def generate_synthetic_dataset(
    out_dir: str | Path,
    n_train: int = 160,
    n_val: int = 40,
    size: Sequence[int] = (96, 128),
    seed: int = 0,
    num_classes: int = 6,
    object_scale: float = 1.0,
) -> Path:
    """Write ``n_train`` + ``n_val`` scenes of ``size=(H, W)`` to ``out_dir`` in the FolderDataset layout.

    Each image has its own generator seeded by ``(seed, split, index)``: the same seed gives the same
    files, and image i does not depend on how many images are generated. Returns ``out_dir``.
    """
    if n_train < 0 or n_val < 0:
        raise ValueError("n_train and n_val must be >= 0")
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8x8, got {tuple(size)}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    palette = SYNTHETIC_PALETTE[:num_classes]
    flat_palette = [c for colour in palette for c in colour]
    flat_palette += [0, 0, 0] * (256 - len(palette))
    flat_palette[3 * IGNORE_INDEX : 3 * IGNORE_INDEX + 3] = [255, 255, 255]
    for split, count in (("train", n_train), ("val", n_val)):
        names = [f"{split}_{i:04d}" for i in range(count)]
        for i, name in enumerate(names):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
            image, mask = render_scene(rng, (h, w), num_classes, object_scale)
            Image.fromarray(image, mode="RGB").save(out / "images" / f"{name}.png", compress_level=1)
            index = Image.fromarray(mask, mode="L").convert("P")
            index.putpalette(flat_palette)
            index.save(out / "masks" / f"{name}.png", compress_level=1)
        (out / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    meta: dict[str, Any] = {
        "name": "synthetic-scenes",
        "num_classes": num_classes,
        "class_names": list(SYNTHETIC_CLASSES[:num_classes]),
        "palette": [list(c) for c in palette],
        "ignore_index": IGNORE_INDEX,
        "size": [h, w],
        "seed": seed,
        "object_scale": object_scale,
        "n_train": n_train,
        "n_val": n_val,
    }
    (out / DATASET_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return out


class SyntheticScenes(FolderDataset):
    """The output of :func:`generate_synthetic_dataset`, read back as a FolderDataset.

    ``num_classes``, ``class_names`` and ``palette`` come from ``dataset.json``; ``split`` is ``"train"``
    (default) or ``"val"``. A missing folder raises FileNotFoundError telling how to generate it.
    """

    title = "synthetic scenes"
    default_split = "train"

    def find_root(self, root: Path) -> Path:
        if not (root / DATASET_JSON).is_file():
            raise FileNotFoundError(
                f"synthetic dataset not found: {root / DATASET_JSON} "
                "(create it with cct_train.data.generate_synthetic_dataset(root) or `cct demo`)"
            )
        return root

    @classmethod
    def generate(cls, root: str | Path, split: str = "train", **kwargs: Any) -> SyntheticScenes:
        """Generate the scenes into ``root`` (kwargs of :func:`generate_synthetic_dataset`), then load ``split``."""
        generate_synthetic_dataset(root, **kwargs)
        return cls(root, split=split)
