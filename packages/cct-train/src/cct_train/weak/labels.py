"""Image-level labels (paper 3.3): read from a CSV / text file or derived from masks, as class ids and as a
multi-hot tensor.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from cct_weak import (
    CRF_INSTALL_HINT,
    is_crf_available,
)

#: ``kind`` of the checkpoints written by :func:`train_cam_classifier`.
CAM_CHECKPOINT_KIND = "cam-classifier"

#: Image-level labels: sample name -> class ids present in the image.
ImageLabels = dict[str, list[int]]

_SEPARATORS = re.compile(r"[\s;,|]+")
_HEADER = ({"name", "image", "id"}, {"labels", "label", "classes"})


# --------------------------------------------------------------------------------------------- labels


def _parse_classes(tokens: Sequence[str], class_names: Sequence[str], where: str) -> list[int]:
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    found: list[int] = []
    for token in tokens:
        if re.fullmatch(r"[+-]?\d+", token):
            index = int(token)
            if not 0 <= index < len(class_names):
                raise ValueError(f"{where}: class index {index} is outside 0..{len(class_names) - 1}")
        elif token.lower() in by_name:
            index = by_name[token.lower()]
        else:
            raise ValueError(f"{where}: unknown class {token!r} (known: {', '.join(class_names)})")
        if index not in found:
            found.append(index)
    return sorted(found)


def read_image_labels(path: str | Path, class_names: Sequence[str]) -> ImageLabels:
    """Read image-level labels from a CSV or a text file.

    - ``.csv``: rows ``name,labels`` (an optional header ``name,labels``), where ``labels`` holds class
      names or indices separated by spaces or semicolons (``horse;person`` or ``"12 15"``); an empty
      ``labels`` field is an image with none of the classes.
    - any other extension: one image per line, ``name label label ...`` (whitespace, ``,`` or ``;``).

    Blank lines and lines starting with ``#`` are skipped. Class names match case-insensitively.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown class name, an index out of range, a duplicated image or an empty file,
            naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image-level labels not found: {path}")
    labels: ImageLabels = {}
    lines = path.read_text().splitlines()
    is_csv = path.suffix.lower() == ".csv"
    rows = csv.reader(lines) if is_csv else ([line] for line in lines)
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        if is_csv:
            name, rest = row[0].strip(), " ".join(row[1:])
            if not labels and name.lower() in _HEADER[0] and rest.strip().lower() in _HEADER[1]:
                continue  # a header row
            tokens = [t for t in _SEPARATORS.split(rest) if t]
        else:
            parts = [t for t in _SEPARATORS.split(row[0]) if t]
            name, tokens = parts[0], parts[1:]
        if not name:
            raise ValueError(f"{where}: empty image name")
        if name in labels:
            raise ValueError(f"{where}: image {name!r} is listed twice")
        labels[name] = _parse_classes(tokens, class_names, where)
    if not labels:
        raise ValueError(f"{path}: no image-level labels found")
    return labels


def labels_tensor(
    names: Sequence[str], labels: Mapping[str, Sequence[int]], num_classes: int
) -> torch.Tensor:
    """Multi-hot rows ``(len(names), C)`` float for ``names``; a name without labels raises KeyError."""
    table = torch.zeros(len(names), num_classes)
    for row, name in enumerate(names):
        if name not in labels:
            raise KeyError(f"no image-level labels for {name!r}")
        table[row, list(labels[name])] = 1.0
    return table


def parse_background_index(value: str | int | None, num_classes: int) -> int | None:
    """``"none"`` / ``None`` -> ``None`` (no background class), else an index in ``[0, C)``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return None
    try:
        index = int(value)
    except ValueError:
        raise ValueError(f"background index must be an integer or 'none', got {value!r}") from None
    if not 0 <= index < num_classes:
        raise ValueError(f"background index {index} is outside 0..{num_classes - 1} (or use 'none')")
    return index


def require_crf() -> None:
    """Raise ImportError with the install hint (and the ``--no-crf`` way out) when pydensecrf is missing."""
    if not is_crf_available():
        raise ImportError(f"{CRF_INSTALL_HINT} Or skip the CRF refinement with --no-crf (crf=False).")


class LabelLookup:
    """Image-level labels of a batch from its names: one row gather, no per-pixel work."""

    def __init__(self, names: Sequence[str], labels: Mapping[str, Sequence[int]], num_classes: int) -> None:
        self.row = {name: i for i, name in enumerate(names)}
        self.table = labels_tensor(names, labels, num_classes)

    def __call__(self, names: Sequence[str], device: torch.device) -> torch.Tensor:
        index = torch.tensor([self.row[n] for n in names], dtype=torch.long)
        return self.table[index].to(device, non_blocking=True)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
