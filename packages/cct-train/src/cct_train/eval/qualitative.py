"""Qualitative predictions for the trackers: a grid of (image, ground truth, prediction) rows.

Each image is predicted at its own size, then the three panels are coloured with the data set's palette
(ignored pixels black), brought to one tile size and laid out with ``torchvision.utils.make_grid``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from cct_train.eval.evaluate import predict_logits, prepare_images

#: Height of one panel of the grid, in pixels (the width follows the first image's aspect ratio).
TILE_HEIGHT = 160


def colour_masks(masks: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """Class ids (..., H, W) -> uint8 colours (..., 3, H, W); ids without a colour (255: ignore) are black."""
    table = torch.zeros((256, 3), dtype=torch.uint8, device=masks.device)
    colours = torch.tensor([list(c) for c in palette], dtype=torch.uint8, device=masks.device)
    table[: len(colours)] = colours[:256]
    return table[masks.long().clamp(0, 255)].movedim(-1, -3)


@torch.no_grad()
def prediction_grid_image(
    model: nn.Module,
    samples: Sequence[dict[str, Any]],
    palette: Sequence[Sequence[int]],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    tile_height: int = TILE_HEIGHT,
) -> np.ndarray:
    """One row per sample (``{"image": uint8 (3, H, W), "mask": (H, W)}``): image, ground truth, prediction.

    The model's main path predicts each image alone at its own size (eval mode; the mode is restored).
    Returns an RGB image (H', W', 3) uint8.
    """
    if not samples:
        raise ValueError("prediction_grid_image: no samples")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    first = samples[0]["image"]
    tile = (tile_height, max(1, round(tile_height * first.shape[-1] / first.shape[-2])))
    panels: list[torch.Tensor] = []
    try:
        for sample in samples:
            image = sample["image"].to(device)[None]
            prediction = predict_logits(model, prepare_images(image, normalize)).argmax(1)
            truth = sample.get("mask")
            truth = torch.full_like(prediction[0], 255) if truth is None else truth.to(device)
            shown = F.interpolate(
                image.float(), size=tile, mode="bilinear", antialias=True, align_corners=False
            )
            for mask in (truth[None], prediction):
                coloured = colour_masks(mask, palette).float()
                shown = torch.cat([shown, F.interpolate(coloured, size=tile, mode="nearest")])
            panels.append(shown.clamp(0, 255))
    finally:
        model.train(was_training)
    grid = make_grid(torch.cat(panels), nrow=3, padding=2, pad_value=255.0)
    return grid.round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
