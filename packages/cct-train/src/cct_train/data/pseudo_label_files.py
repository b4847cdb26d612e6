"""Pseudo-labels (weak labels, paper 3.3) attached to unlabeled samples as their ``"mask"``.

``WithPseudoLabels(dataset, folder)`` reads ``<folder>/<name>.png`` (an index PNG, 255 = ignore, as written
by ``cct pseudo-labels``) for every sample of ``dataset`` and returns it as the sample's ``"mask"``, resized
like the images (nearest) when the dataset resizes. The trainer passes that mask of an unlabeled batch to
the model as its weak targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from cct_train.data.base import IGNORE_INDEX, Sample, mask_to_tensor, read_mask_raw, resize_mask


def pseudo_label_path(folder: str | Path, name: str) -> Path:
    """Where the pseudo-label of sample ``name`` lives: ``<folder>/<name>.png`` (names may hold ``/``)."""
    return Path(folder) / f"{name}.png"


class WithPseudoLabels(Dataset[Sample]):
    """Samples of ``dataset`` with ``"mask"`` read from ``<folder>/<name>.png``.

    Args:
        dataset: any dataset of samples with ``"image"`` and ``"name"`` and a ``names`` attribute (an
            :class:`~cct_train.data.ImageDataset`, typically ``subset(unlabeled).without_masks()``).
        folder: the folder of index PNGs (uint8 class ids, ``ignore_index`` for ignored pixels).
        resize: ``(H, W)`` to resize the PNGs to (nearest); default ``dataset.resize`` when it has one. Without
            a resize a PNG must have its image's size.
        num_classes: when given, PNG values outside ``[0, num_classes)`` other than ``ignore_index`` raise.
        ignore_index: the ignore value.

    Raises:
        FileNotFoundError: at construction, when the folder or any ``<name>.png`` is missing (all names are
            checked, so a run fails at start, not hours in).
    """

    def __init__(
        self,
        dataset: Any,
        folder: str | Path,
        *,
        resize: tuple[int, int] | None = None,
        num_classes: int | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.dataset = dataset
        self.folder = Path(folder)
        self.resize = resize if resize is not None else getattr(dataset, "resize", None)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if not self.folder.is_dir():
            raise FileNotFoundError(f"pseudo-labels: directory not found: {self.folder}")
        names = list(dataset.names)
        missing = [pseudo_label_path(self.folder, n) for n in names]
        missing = [p for p in missing if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(
                f"pseudo-labels: {len(missing)} of {len(names)} PNG(s) missing in {self.folder}, e.g. {shown} "
                "(write them with `cct pseudo-labels`)"
            )

    @property
    def names(self) -> list[str]:
        return list(self.dataset.names)

    @property
    def has_masks(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, name: str) -> np.ndarray:
        """The pseudo-label of ``name`` at the file's size: int64 (H, W)."""
        path = pseudo_label_path(self.folder, name)
        raw = read_mask_raw(path)
        if raw.ndim != 2:
            raise ValueError(f"{path}: pseudo-labels must be a single-channel index PNG, got {raw.shape}")
        if self.num_classes is not None:
            bad = ((raw < 0) | (raw >= self.num_classes)) & (raw != self.ignore_index)
            if bad.any():
                found = sorted(int(v) for v in np.unique(raw[bad]))[:10]
                raise ValueError(
                    f"{path}: values {found} are outside 0..{self.num_classes - 1} and not the ignore index "
                    f"{self.ignore_index}"
                )
        return raw

    def __getitem__(self, index: int) -> Sample:
        sample: Sample = dict(self.dataset[index])  # type: ignore[assignment]
        mask = self.load(sample["name"])
        if self.resize is not None:
            mask = resize_mask(mask, self.resize)
        height, width = sample["image"].shape[-2:]
        if mask.shape != (height, width):
            raise ValueError(
                f"{pseudo_label_path(self.folder, sample['name'])}: size {mask.shape[1]}x{mask.shape[0]} (WxH) "
                f"differs from its image ({width}x{height}); set data.resize or regenerate the pseudo-labels"
            )
        sample["mask"] = mask_to_tensor(mask)
        return sample
