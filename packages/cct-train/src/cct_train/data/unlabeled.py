"""Images without masks, from folders (recursive) or explicit file lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cct_train.data.base import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    Item,
    MissingPolicy,
    SkippedEntry,
    check_missing_policy,
)


def _name(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def collect_images(
    root: str | Path | Sequence[str | Path],
    exts: Sequence[str] = IMAGE_EXTENSIONS,
    missing: MissingPolicy = "raise",
    skipped: list[SkippedEntry] | None = None,
) -> list[Item]:
    """Items for every image under ``root`` (a folder, searched recursively, or a list of files/folders).

    Names are paths relative to their folder without the extension (``"sub/img001"``), or the stem for a
    file given directly; sorted by name. Raises FileNotFoundError for a missing path, ValueError when no
    image is found or two images get the same name. With ``missing="skip"`` a missing path and the
    second image of a name are left out instead, recorded in ``skipped``.
    """
    lost: list[SkippedEntry] = []
    roots = [root] if isinstance(root, str | Path) else list(root)
    lowered = {e.lower() for e in exts}
    items: dict[str, Item] = {}
    for entry in roots:
        path = Path(entry)
        if path.is_dir():
            found: list[tuple[Path, Path | None]] = [
                (p, path) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in lowered
            ]
        elif path.is_file():
            found = [(path, None)]
        else:
            message = f"UnlabeledFolder: not found: {path}"
            if missing == "raise":
                raise FileNotFoundError(message)
            lost.append(SkippedEntry("missing", path, message))
            continue
        for file, base in found:
            name = _name(file, base)
            if name in items and items[name].image != file:
                message = f"UnlabeledFolder: two images named {name!r}: {items[name].image} and {file}"
                if missing == "raise":
                    raise ValueError(message)
                lost.append(SkippedEntry("duplicate", file, message, name))
                continue
            items[name] = Item(name=name, image=file)
    if skipped is not None:
        skipped.extend(lost)
    if not items and not lost:
        raise ValueError(f"UnlabeledFolder: no images with extensions {sorted(lowered)} in {root}")
    return [items[name] for name in sorted(items)]


class UnlabeledFolder(ImageDataset):
    """Images only: samples ``{"image": uint8 (3, H, W), "name": str}`` (no ``"mask"``).

    Args:
        root: a folder (searched recursively) or a list of image files / folders.
        resize: optional CPU bilinear resize ``(H, W)`` so that batches stack.
        exts: accepted file extensions (case-insensitive).
        names: keep only these sample ids.
        missing: ``"raise"`` or ``"skip"`` (missing paths and same-named images are left out, recorded
            in ``skipped_entries``); see :func:`collect_images`.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        resize: Sequence[int] | None = None,
        exts: Sequence[str] = IMAGE_EXTENSIONS,
        names: Sequence[str] | None = None,
        missing: MissingPolicy = "raise",
    ) -> None:
        skipped: list[SkippedEntry] = []
        super().__init__(collect_images(root, exts, check_missing_policy(missing), skipped), resize)
        self.skipped_entries = tuple(skipped)
        self._with_masks = False
        if names is not None:
            self._items = self.subset(names)._items
