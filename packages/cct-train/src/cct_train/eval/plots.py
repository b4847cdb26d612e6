"""Figures shared by `cct demo` and `cct study`: prediction grids next to ground truth (matplotlib, Agg).

matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cct_train.eval.evaluate import Normalize, prepare_images

PLOTS_MISSING = (
    "the figures need matplotlib, an optional dependency: pip install matplotlib "
    "(or the extra: pip install './packages/cct-train[plots]')"
)


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend, with an install hint when it is missing."""
    if not plots_available():
        raise ImportError(PLOTS_MISSING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def predict_classes(model: torch.nn.Module, images: torch.Tensor, normalize: Normalize | None) -> np.ndarray:
    """(B, 3, H, W) uint8 images -> (B, H, W) uint8 class indices of the model's main path (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = model(prepare_images(images.to(device), normalize))
    model.train(was_training)
    return logits.argmax(1).to(torch.uint8).cpu().numpy()


def prediction_grid(
    images: torch.Tensor,
    masks: torch.Tensor,
    predictions: Mapping[str, np.ndarray],
    palette: Sequence[Sequence[int]],
    path: str | Path,
    *,
    dpi: int = 80,
) -> Path:
    """One row per image: the image, its ground truth, then each model's prediction, coloured by `palette`.

    Args:
        images: (B, 3, H, W) uint8 images.
        masks: (B, H, W) class ids (255: ignore, drawn black).
        predictions: column title -> (B, H, W) class ids.
    """
    from cct_train.eval.inference import colorize

    plt = pyplot()
    count = int(images.shape[0])
    columns = ["image", "ground truth", *predictions]
    fig, axes = plt.subplots(count, len(columns), figsize=(3 * len(columns), 2.4 * count), squeeze=False)
    for row in range(count):
        panels = [
            images[row].permute(1, 2, 0).cpu().numpy(),
            colorize(masks[row].cpu().numpy().astype(np.uint8), palette),
            *[colorize(np.asarray(pred[row], dtype=np.uint8), palette) for pred in predictions.values()],
        ]
        for col, panel in enumerate(panels):
            axes[row, col].imshow(panel)
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(columns[col])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
