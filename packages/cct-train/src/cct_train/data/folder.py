"""A generic labeled image folder: ``images/`` + ``masks/`` with optional split lists.

::

    root/images/<name>.<ext>     RGB or greyscale images (greyscale is replicated to 3 channels)
    root/masks/<name>.png        index PNGs (class ids) or RGB PNGs decoded with a palette
    root/train.txt, val.txt      optional split lists: one name (or file name) per line, or "image mask"
    root/train.csv               or CSV lists with columns image,mask (optional column name)
    root/dataset.json            optional defaults: num_classes, class_names, palette, ignore_index, void_values,
                             void_colors

Paths in lists are relative to ``root`` (or to the image / mask folder), or absolute; either way they must
lie under ``root`` once resolved (``..`` and links followed): one that leaves it is refused by name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cct_train.data.base import (
    IGNORE_INDEX,
    IMAGE_EXTENSIONS,
    Item,
    MissingPolicy,
    SegmentationDataset,
    SkippedEntry,
    inside_root,
    map_rgb_mask,
    outside_root_entry,
    read_mask_raw,
    refuse_lost,
    require_dir,
)
from cct_train.data.lists import expected_tokens, read_list

DATASET_JSON = "dataset.json"


def read_dataset_json(root: Path) -> dict[str, Any]:
    """The ``dataset.json`` of a folder dataset, or {} when there is none."""
    path = root / DATASET_JSON
    if not path.is_file():
        return {}
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return meta


def _index_files(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    """stem -> file for the files of ``folder`` whose suffix is in ``exts`` (case-insensitive)."""
    lowered = {e.lower() for e in exts}
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in lowered:
                found.setdefault(path.stem, path)
    return found


class _Unresolved(FileNotFoundError):
    """A list token that names no existing file; ``entry`` says which file was expected."""

    def __init__(self, entry: SkippedEntry) -> None:
        super().__init__(entry.message)
        self.entry = entry


class _Resolver:
    """Turns the tokens of a list file into existing paths (:class:`_Unresolved` when there is none)."""

    def __init__(
        self, root: Path, image_dir: Path, mask_dir: Path, image_exts: Sequence[str], mask_exts: Sequence[str]
    ):
        self.root = root
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.images = _index_files(image_dir, image_exts)
        self.masks = _index_files(mask_dir, mask_exts)

    def _path(self, token: str, folder: Path, by_stem: dict[str, Path], what: str, source: str) -> Path:
        path = Path(token)
        stem = path.name if path.suffix == "" else path.stem
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [self.root / path, folder / path]
        outside: Path | None = None
        for candidate in candidates:
            if not inside_root(candidate, self.root):
                outside = outside or candidate
            elif candidate.is_file():
                return candidate
        if path.suffix == "" and stem in by_stem:
            return self._inside(by_stem[stem], source, stem)
        if outside is not None:  # named as such, never opened: not "missing", not "cannot be decoded"
            raise _Unresolved(outside_root_entry(outside, self.root, source, stem))
        kind = "unknown-name" if path.suffix == "" else "missing"
        guess = path if path.is_absolute() else (self.root / path if len(path.parts) > 1 else folder / path)
        message = f"{source}: {what} {token!r} not found (looked in {self.root} and {folder})"
        raise _Unresolved(SkippedEntry(kind, guess, message, stem))

    def _inside(self, path: Path, source: str, name: str) -> Path:
        """``path`` (found by listing a folder) unless it is a link that leaves the root."""
        if not inside_root(path, self.root):
            raise _Unresolved(outside_root_entry(path, self.root, source, name))
        return path

    def image(self, token: str, source: str) -> Path:
        return self._path(token, self.image_dir, self.images, "image", source)

    def mask(self, token: str, source: str) -> Path:
        return self._path(token, self.mask_dir, self.masks, "mask", source)

    def mask_for(self, image: Path, source: str) -> Path:
        if image.stem in self.masks:
            return self._inside(self.masks[image.stem], source, image.stem)
        message = f"{source}: no mask for image {image.name} in {self.mask_dir}"
        raise _Unresolved(SkippedEntry("missing", self.mask_dir / f"{image.stem}.png", message, image.stem))

    def pair(
        self, image_token: str, mask_token: str | None, source: str
    ) -> tuple[Path, Path] | list[SkippedEntry]:
        """The image and mask of one list entry, or every missing file of it when some are missing."""
        lost: list[SkippedEntry] = []
        image: Path | None = None
        mask: Path | None = None
        try:
            image = self.image(image_token, source)
        except _Unresolved as error:
            entry = error.entry
            if entry.kind == "unknown-name" and entry.name in self.masks:  # a known sample without its image
                entry = SkippedEntry("missing", entry.path, entry.message, entry.name)
            lost.append(entry)
        try:
            if mask_token:
                mask = self.mask(mask_token, source)
            elif image is not None:
                mask = self.mask_for(image, source)
            elif lost[0].kind == "missing" and lost[0].name not in self.masks:
                self.mask_for(Path(f"{lost[0].name}.png"), source)  # the mask is missing as well
        except _Unresolved as error:
            lost.append(error.entry)
        if image is None or mask is None:
            return lost
        return image, mask


def read_list_file(
    path: Path, resolver: _Resolver, missing: MissingPolicy = "raise"
) -> tuple[list[Item], list[SkippedEntry]]:
    """Parse a split list (.txt: ``name`` or ``image mask`` per line; .csv: columns image,mask[,name]):
    ``(items, left out)``.

    Entries whose files are missing raise :class:`~cct_train.data.base.MissingFilesError` listing every
    missing file of the list; with ``missing="skip"`` they are left out, returned as
    :class:`~cct_train.data.base.SkippedEntry` records.
    """
    items: list[Item] = []
    lost: list[SkippedEntry] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not part of "image"
            reader = csv.DictReader(handle)
            fields = [f.strip() for f in reader.fieldnames or []]
            if "image" not in fields:
                raise ValueError(
                    f"{path}: a CSV split list needs a header with columns image,mask; got {fields}"
                )
            for number, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                source = f"{path}:{number}"
                found = resolver.pair(row["image"], row.get("mask") or None, source)
                if isinstance(found, list):
                    lost.extend(found)
                    continue
                image, mask = found
                items.append(Item(name=row.get("name") or image.stem, image=image, mask=mask))
        refuse_lost(str(path), lost, missing)
        return items, lost
    for entry in read_list(path):
        parts = entry.tokens
        source = f"{path}:{entry.line}"
        if len(parts) > 2:
            raise expected_tokens(path, entry, "'name' or 'image mask'")
        found = resolver.pair(parts[0], parts[1] if len(parts) == 2 else None, source)
        if isinstance(found, list):
            lost.extend(found)
            continue
        image, mask = found
        items.append(Item(name=image.stem, image=image, mask=mask))
    refuse_lost(str(path), lost, missing)
    return items, lost


def _find_list(root: Path, split: str | None, list_file: str | Path | None) -> Path | None:
    if list_file is not None:
        path = Path(list_file)
        path = path if path.is_absolute() or path.is_file() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"split list not found: {path}")
        return path
    if split is None:
        return None
    candidates = [root / f"{split}.txt", root / f"{split}.csv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"split list for {split!r} not found: tried {', '.join(map(str, candidates))}")


class FolderDataset(SegmentationDataset):
    """Images + masks from a folder: samples ``{"image": uint8 (3, H, W), "mask": int64 (H, W), "name"}``.

    ``split``: read ``root/<split>.txt`` or ``root/<split>.csv``; None (the default, and no ``list_file``)
    takes every image of ``image_dir`` that has a mask of the same stem in ``mask_dir``. With
    ``missing="raise"``, list entries whose files are missing raise a
    :class:`~cct_train.data.base.MissingFilesError` listing all of them, and a duplicate name a
    ValueError; ``"skip"`` leaves such entries out, recorded in ``skipped_entries``. A mask whose size
    differs from its image raises a ValueError naming both files.

    Its options (:meth:`configure`; the label space defaults to ``dataset.json``'s values):

    - ``list_file``: an explicit split list (.txt or .csv), relative to ``root`` or absolute;
    - ``image_dir``, ``mask_dir``: sub-folders of ``root`` (or absolute paths); ``image_exts``,
      ``mask_exts``: the file extensions looked for (case-insensitive);
    - ``num_classes``; ``class_names``, ``palette``: names and RGB colours of the classes. An explicit
      palette also decodes RGB masks: class i has colour ``palette[i]``, other colours -> ignore;
    - ``ignore_index``: the value of ignored pixels in the returned masks (255); ``void_values``: index
      values on disk mapped to it; ``void_colors``: RGB colours of RGB masks that mean "ignore" (like
      every colour outside the palette they decode to ``ignore_index``, but ``cct data check`` accepts
      them where it reports other unknown colours);
    - ``strict_masks``: values outside the classes (and not void / ignore) raise a ValueError naming the
      file (default); False maps them to ``ignore_index``.
    """

    title = "FolderDataset"
    default_split: ClassVar[str | None] = None

    def configure(
        self,
        *,
        list_file: str | Path | None = None,
        image_dir: str | Path = "images",
        mask_dir: str | Path = "masks",
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int | None = None,
        void_values: Sequence[int] | None = None,
        image_exts: Sequence[str] = IMAGE_EXTENSIONS,
        mask_exts: Sequence[str] = (".png", ".bmp", ".tif", ".tiff"),
        strict_masks: bool = True,
        void_colors: Sequence[Sequence[int]] | None = None,
    ) -> None:
        meta = read_dataset_json(self.root)
        classes = num_classes if num_classes is not None else meta.get("num_classes")
        if classes is None:
            raise ValueError(f"FolderDataset({self.root}): pass num_classes (no {DATASET_JSON} gives it)")
        if not 1 <= int(classes) <= 255:
            raise ValueError(f"num_classes must be in 1..255, got {classes}")
        names = class_names if class_names is not None else meta.get("class_names")
        self.class_names = tuple(names) if names is not None else tuple(f"class_{i}" for i in range(classes))
        if len(self.class_names) != int(classes):
            raise ValueError(f"{len(self.class_names)} class names for {classes} classes")
        self._mask_palette = palette if palette is not None else meta.get("palette")
        self.palette = self._mask_palette or ()
        self.ignore_index = int(
            ignore_index if ignore_index is not None else meta.get("ignore_index", IGNORE_INDEX)
        )
        void = void_values if void_values is not None else meta.get("void_values", ())
        self.void_values = tuple(int(v) for v in void)
        self.strict_masks = strict_masks
        colours = void_colors if void_colors is not None else meta.get("void_colors", ())
        self.void_colors = tuple((int(c[0]), int(c[1]), int(c[2])) for c in colours)
        # Where the files are, for list_items.
        self.list_file, self.image_dir, self.mask_dir = list_file, image_dir, mask_dir
        self.image_exts, self.mask_exts = tuple(image_exts), tuple(mask_exts)

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        images = require_dir(self.root / self.image_dir, "FolderDataset image folder")
        masks = require_dir(self.root / self.mask_dir, "FolderDataset mask folder")
        resolver = _Resolver(self.root, images, masks, self.image_exts, self.mask_exts)
        path = _find_list(self.root, self.split, self.list_file)
        skipped: list[SkippedEntry] = []
        if path is not None:
            items, skipped = read_list_file(path, resolver, self.missing)
        else:
            items = [
                Item(name=stem, image=image, mask=resolver.masks[stem])
                for stem, image in resolver.images.items()
                if stem in resolver.masks
            ]
        if not items and not skipped:
            raise ValueError(f"FolderDataset({self.root}): no image/mask pairs found")
        seen: dict[str, Item] = {}
        unique: list[Item] = []
        for item in items:
            if item.name in seen:
                message = (
                    f"FolderDataset({self.root}): duplicate sample name {item.name!r} "
                    f"({item.image}; first listed as {seen[item.name].image})"
                )
                if self.missing == "raise":
                    raise ValueError(message)
                skipped.append(SkippedEntry("duplicate", item.image, message, item.name))
                continue
            seen[item.name] = item
            unique.append(item)
        return unique, skipped

    def load_mask(self, path: Path) -> np.ndarray:
        raw = read_mask_raw(path)
        if raw.ndim == 3:
            if self._mask_palette is not None:
                return map_rgb_mask(raw, self._mask_palette, self.ignore_index)
            if (raw == raw[..., :1]).all():
                raw = raw[..., 0]
            else:
                raise ValueError(f"{path}: RGB mask but no palette to decode it (pass palette=...)")
        return self.map_index(raw, path)
