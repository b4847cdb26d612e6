"""CamVid in the SegNet layout (11 classes, 360x480, void 11 -> ignore 255).

::

    root/train/*.png  root/trainannot/*.png  root/train.txt   (likewise val, test)

Each line of ``<split>.txt`` is an ``image label`` pair, relative to ``root`` or absolute SegNet paths such
as ``/SegNet/CamVid/train/0001TP_006690.png``: the last two path components are resolved under ``root``.
"""

from __future__ import annotations

from pathlib import Path

from cct_train.data.base import (
    Item,
    MissingPolicy,
    SegmentationDataset,
    SkippedEntry,
    inside_root,
    outside_root_entry,
    refuse_lost,
)
from cct_train.data.lists import expected_tokens, read_list

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
"""The 11 CamVid classes of the SegNet split, in id order."""

CAMVID_PALETTE: list[tuple[int, int, int]] = [
    (128, 128, 128),  # Sky
    (128, 0, 0),  # Building
    (192, 192, 128),  # Pole
    (128, 64, 128),  # Road
    (60, 40, 222),  # Pavement
    (128, 128, 0),  # Tree
    (192, 128, 128),  # SignSymbol
    (64, 64, 128),  # Fence
    (64, 0, 128),  # Car
    (64, 64, 0),  # Pedestrian
    (0, 128, 192),  # Bicyclist
]
"""The standard CamVid (SegNet) colour of each class; void is drawn black."""

CAMVID_VOID = 11
CAMVID_SPLITS = ("train", "val", "test")


def _resolve(root: Path, token: str) -> Path:
    """Map one path of a split file to a file under ``root`` (or, for ``../``, the path that leaves it,
    which :func:`read_camvid_list` then refuses by name)."""
    path = Path(token)
    if not path.is_absolute():
        candidate = root / path
        if candidate.is_file() or not inside_root(candidate, root):
            return candidate
    elif path.is_file() and inside_root(path, root):
        return path
    return root.joinpath(*path.parts[-2:])  # a SegNet path (/SegNet/CamVid/train/x.png): its last two parts


def read_camvid_list(
    root: Path, split: str, missing: MissingPolicy = "raise"
) -> tuple[list[Item], list[SkippedEntry]]:
    """Parse ``root/<split>.txt`` into items (name = image stem), checking that every file exists:
    ``(items, left out)``.

    Missing files raise :class:`~cct_train.data.base.MissingFilesError` listing all of them; with
    ``missing="skip"`` their entries are left out, returned as :class:`~cct_train.data.base.SkippedEntry`.
    """
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        present = sorted(p.stem for p in root.glob("*.txt"))
        raise FileNotFoundError(f"CamVid split file not found: {list_file} (splits present: {present})")
    items: list[Item] = []
    lost: list[SkippedEntry] = []
    for entry in read_list(list_file):
        if len(entry.tokens) != 2:
            raise expected_tokens(list_file, entry, "'image label'")
        source = f"{list_file}:{entry.line}"
        name = Path(entry.tokens[0]).stem
        found: list[Path] = []
        before = len(lost)
        for role, token in zip(("image", "label"), entry.tokens, strict=True):
            path = _resolve(root, token)
            if not inside_root(path, root):
                lost.append(outside_root_entry(path, root, source, name))
            elif not path.is_file():
                # Named as written, with the line; the path looked for too when it is another one.
                written = Path(token)
                looked = "" if written == path else f" (looked for {path})"
                shown = written if written.is_absolute() else path
                lost.append(
                    SkippedEntry("missing", shown, f"{source}: {role} {token!r} not found{looked}", name)
                )
            found.append(path)
        if len(lost) == before:
            items.append(Item(name=found[0].stem, image=found[0], mask=found[1]))
    refuse_lost(f"CamVid {split}", lost, missing)
    return items, lost


class CamVid(SegmentationDataset):
    """CamVid, SegNet split: samples ``{"image": uint8 (3, 360, 480), "mask": int64 (360, 480), "name"}``.

    ``root`` holds ``train/``, ``trainannot/``, ``train.txt`` etc.; ``split`` is ``"train"``, ``"val"`` or
    ``"test"``; ``names`` are image stems (e.g. a labeled subset from :func:`cct_train.data.make_split`).
    The other arguments are the template's (:class:`~cct_train.data.base.SegmentationDataset`). Masks hold
    0..10 and 255 (void, 11 on disk).
    """

    title = "CamVid"
    splits = CAMVID_SPLITS
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    void_values = (CAMVID_VOID,)

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        return read_camvid_list(self.root, str(self.split), self.missing)
