"""The deep check: every image and mask decoded completely, in worker processes (a torch DataLoader), each
failure turned into a `Problem` (unreadable, truncated, size-mismatch, mask-values, palette).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import ImageFile
from torch.utils.data import DataLoader, Dataset

from cct_train.data.base import (
    IGNORE_INDEX,
    ImageDataset,
    ImageTooLargeError,
    Item,
    read_mask_raw,
)
from cct_train.data.camvid import CamVid
from cct_train.data.check.problems import Problem
from cct_train.data.folder import FolderDataset

if TYPE_CHECKING:
    pass


# -- decoding every file -------------------------------------------------------------------------------


def _decode_kind(error: BaseException) -> str:
    if isinstance(error, ImageTooLargeError):
        return "too-large"
    return "truncated" if "truncat" in str(error).lower() else "unreadable"


def _decode_message(role: str, path: object, error: BaseException) -> str:
    if isinstance(error, ImageTooLargeError):  # its message starts with the path the problem names
        return f"{role} is " + str(error).removeprefix(f"{path}: ")
    return f"{role} cannot be decoded: {_describe(error)}"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _index_problem(
    raw: np.ndarray, num_classes: int, ignore_index: int, void: Sequence[int], fatal: bool
) -> str | None:
    values, counts = np.unique(raw, return_counts=True)
    ok = ((values >= 0) & (values < num_classes)) | (values == ignore_index) | np.isin(values, list(void))
    if ok.all():
        return None
    bad = {int(v): int(n) for v, n in zip(values[~ok], counts[~ok], strict=True)}
    shown = ", ".join(f"{v} ({n} px)" for v, n in list(bad.items())[:10])
    allowed = f"0..{num_classes - 1}, the ignore index {ignore_index}" + (
        f", void {list(void)}" if void else ""
    )
    fix = "they raise at load time" if fatal else "strict_masks=False maps them to ignore"
    total = f"{sum(bad.values())} pixels; " if len(bad) > 1 else ""
    return f"mask values {shown} are outside {allowed} ({total}{fix})"


def _palette_problem(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], void_colors: Sequence[Sequence[int]]
) -> str | None:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    values, counts = np.unique(codes, return_counts=True)
    known = {(int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2]) for c in [*palette, *void_colors]}
    bad = [(int(v), int(n)) for v, n in zip(values, counts, strict=True) if int(v) not in known]
    if not bad:
        return None
    bad.sort(key=lambda vn: -vn[1])
    total = sum(n for _, n in bad)
    shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255}) x {n} px" for v, n in bad[:8])
    more = f" and {len(bad) - 8} more colours" if len(bad) > 8 else ""
    return (
        f"{total} pixels ({100 * total / codes.size:.1f}%) in {len(bad)} colour(s) not in the configured "
        f"palette: {shown}{more} (they would be read as ignore; if meant so, list them in void_colors)"
    )


def _mask_problems(
    dataset: ImageDataset, item: Item, image_size: tuple[int, int] | None, part: str
) -> list[Problem]:
    assert item.mask is not None
    where = str(item.mask)
    try:
        raw = read_mask_raw(item.mask)
    except Exception as error:
        message = _decode_message("mask", item.mask, error)
        return [Problem(where, _decode_kind(error), message, True, item.name, part)]
    problems: list[Problem] = []
    h, w = raw.shape[:2]
    if image_size is not None and (h, w) != image_size:
        message = f"mask is {w}x{h} (WxH) but its image {item.image} is {image_size[1]}x{image_size[0]}"
        problems.append(Problem(where, "size-mismatch", message, True, item.name, part))
    num_classes = int(getattr(dataset, "num_classes", 0))
    ignore = int(getattr(dataset, "ignore_index", IGNORE_INDEX))
    issue: str | None = None
    kind, fatal = "mask-values", True
    if isinstance(dataset, FolderDataset):
        palette = dataset._mask_palette
        if raw.ndim == 3 and palette is not None:
            issue, kind = _palette_problem(raw, list(palette)[:num_classes], dataset.void_colors), "palette"
        elif raw.ndim == 3 and not (raw == raw[..., :1]).all():
            issue, kind = "RGB mask but no palette to decode it (set data.options.palette)", "palette"
        else:
            index = raw[..., 0] if raw.ndim == 3 else raw
            fatal = dataset.strict_masks
            issue = _index_problem(index, num_classes, ignore, dataset.void_values, fatal)
    elif isinstance(dataset, CamVid):
        if raw.ndim == 3:
            issue = "an RGB image where an 8-bit index PNG is expected"
        else:
            issue = _index_problem(raw, num_classes, ignore, dataset.void_values, True)
    else:  # another data set: its own decoding must work and give class ids or ignore
        try:
            mapped = dataset._load_mask(item)
        except Exception as error:
            issue = _describe(error)
        else:
            issue = _index_problem(mapped, num_classes, ignore, (), True) if num_classes else None
    if issue is not None:
        problems.append(Problem(where, kind, issue, fatal, item.name, part))
    return problems


@dataclass(frozen=True)
class DecodeTask:
    part: str
    dataset: int
    index: int
    with_mask: bool
    mask_fatal: bool = True


@dataclass(frozen=True)
class Decoded:
    """What decoding one task found: its problems (none when it is fine) and its image's (H, W) at its own
    size (None when the image did not decode)."""

    problems: list[Problem]
    size: tuple[int, int] | None


class _DecodeTasks(Dataset[Decoded]):
    """Decodes one item per index and returns what it found."""

    def __init__(self, datasets: Sequence[ImageDataset], tasks: Sequence[DecodeTask]) -> None:
        self.datasets = list(datasets)
        self.tasks = list(tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Decoded:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        task = self.tasks[index]
        dataset = self.datasets[task.dataset]
        item = dataset.items[task.index]
        problems: list[Problem] = []
        size: tuple[int, int] | None = None
        try:
            image = dataset._load_image(item)
            size = (int(image.shape[0]), int(image.shape[1]))
        except Exception as error:
            message = _decode_message("image", item.image, error)
            problems.append(
                Problem(str(item.image), _decode_kind(error), message, True, item.name, task.part)
            )
        if task.with_mask and item.mask is not None:
            found = _mask_problems(dataset, item, size, task.part)
            if not task.mask_fatal:  # an unlabeled sample of the train split: its mask is not used
                note = " (an unlabeled sample in this split: its mask is not used)"
                found = [replace(p, fatal=False, message=p.message + note) for p in found]
            problems.extend(found)
        return Decoded(problems, size)


def _identity(decoded: Any) -> Any:
    """The collate function of ``batch_size=None``: each :class:`Decoded` as it is."""
    return decoded


def decode_all(
    datasets: Sequence[ImageDataset], tasks: Sequence[DecodeTask], workers: int, progress: bool
) -> list[Decoded]:
    """Every task decoded (``workers`` processes; 0: this one), in the order of ``tasks``."""
    if not tasks:
        return []
    loader = DataLoader(
        _DecodeTasks(datasets, tasks),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
    )
    results: Iterable[Decoded] = iter(loader)  # workers start before any progress-bar thread
    if progress:
        from cct_train.common.progress import progress_iter

        results = progress_iter(results, f"checking {len(tasks)} samples", total=len(tasks))
    return list(results)


@contextmanager
def strict_decoding() -> Iterator[None]:
    """PIL must fail on truncated files while the check runs (``LOAD_TRUNCATED_IMAGES`` off)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
