"""Common machinery of the datasets: the sample dict, CPU decoding, resizing and mask validation.

A sample is a dict (see :class:`Sample`)::

    {"image": uint8 tensor (3, H, W), "mask": int64 tensor (H, W), "name": str}

``"mask"`` is absent for unlabeled samples. Mask values are class ids ``0 .. num_classes - 1`` or the
ignore index (255 by default); every dataset maps its own void value onto the ignore index.
Decoding runs on CPU workers with PIL; heavy augmentation runs later, batched, on the device
(:mod:`cct_train.data.augment`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cct_train.common.limits import MAX_IMAGE_PIXELS

IGNORE_INDEX = 255
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

Palette = list[tuple[int, int, int]]

MissingPolicy = Literal["raise", "skip"]
"""What a dataset does with list entries whose files are missing (or duplicated): raise or skip them."""

MAX_LISTED = 20
"""At most this many paths are spelled out in a :class:`MissingFilesError` message."""


class SampleError(ValueError):
    """A sample that cannot be read (a truncated or unreadable file, an image too large...); the message
    names the file and says what to do.

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's whole
    traceback as its message: the constructor keeps only the original message, so that the command line
    shows a few lines, not 200.
    """

    def __init__(self, message: str) -> None:
        if "Original Traceback" in message:
            message = message.rstrip().rsplit(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


class ImageTooLargeError(SampleError):
    """An image or mask over :data:`MAX_IMAGE_PIXELS`."""


def check_pixels(img: Image.Image, path: Path | str) -> None:
    """Raise :class:`ImageTooLargeError` naming ``path`` when the opened (not yet decoded) ``img`` is over
    :data:`MAX_IMAGE_PIXELS`."""
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the limit of "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP per image (it would take gigabytes of memory to decode and "
            "train on): downscale it, e.g. to at most 4000 px on the long side, or cut it into tiles"
        )


class _SampleRequired(TypedDict):
    image: torch.Tensor
    name: str


class Sample(_SampleRequired, total=False):
    """One sample: ``image`` uint8 (3, H, W), optional ``mask`` int64 (H, W), ``name`` (its id); ``seed``:
    its random draws' seed, set by :class:`~cct_train.data.loaders.SeededDataset` for training crops."""

    mask: torch.Tensor
    seed: int


@dataclass(frozen=True)
class SkippedEntry:
    """A list entry a dataset left out (built with ``missing="skip"``), and why.

    ``kind`` is ``"missing"`` (a listed file does not exist), ``"unknown-name"`` (a bare sample name
    that matches no file), ``"duplicate"`` (a sample name listed again) or ``"outside-root"`` (a listed
    path that leaves the data root, refused unread); ``path`` is the file (or the best guess of it),
    ``name`` the sample id when known.
    """

    kind: str
    path: Path
    message: str
    name: str | None = None


class MissingFilesError(FileNotFoundError):
    """Files a dataset needs do not exist.

    ``paths`` holds every missing file (not only the first), ``what`` says whose they are, ``entries``
    the per-entry details (:class:`SkippedEntry`) when the dataset knows them. The message lists up to
    :data:`MAX_LISTED` of them and the count.
    """

    def __init__(self, what: str, paths: Sequence[Path | str], entries: Sequence[SkippedEntry] = ()) -> None:
        self.what = what
        self.paths: list[Path] = [Path(p) for p in paths]
        self.entries: list[SkippedEntry] = list(entries)
        lines = [e.message for e in self.entries] if self.entries else [str(p) for p in self.paths]
        shown = "".join(f"\n  {line}" for line in lines[:MAX_LISTED])
        more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        super().__init__(f"{what}: {len(self.paths)} file(s) not found:{shown}{more}")

    def __reduce__(self) -> tuple[type[MissingFilesError], tuple[str, list[Path], list[SkippedEntry]]]:
        return type(self), (self.what, self.paths, self.entries)


OUTSIDE_ROOT = "outside-root"
"""The :class:`SkippedEntry` / data-check kind of a listed path that leaves the data root."""


class OutsideRootError(ValueError):
    """Split-list entries name files outside the data root (``../``, an absolute path elsewhere, or a link
    whose target lies elsewhere): refused, whatever ``missing`` says, and none of them is opened.

    ``entries`` holds one :class:`SkippedEntry` per refused path; the message names each one.
    """

    def __init__(self, what: str, entries: Sequence[SkippedEntry]) -> None:
        self.what = what
        self.entries: list[SkippedEntry] = list(entries)
        lines = [e.message for e in self.entries]
        shown = "".join(f"\n  {line}" for line in lines[:MAX_LISTED])
        more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        super().__init__(f"{what}: {len(lines)} path(s) leave the data root:{shown}{more}")

    def __reduce__(self) -> tuple[type[OutsideRootError], tuple[str, list[SkippedEntry]]]:
        return type(self), (self.what, self.entries)


def inside_root(path: Path, root: Path) -> bool:
    """Whether ``path`` lies under ``root`` once both are resolved (``..`` and symbolic links followed).

    Lexical checks are not enough: ``train/x.png`` may be a link to ``/etc/passwd``.

    >>> inside_root(Path("/data/camvid/train/a.png"), Path("/data/camvid"))
    True
    >>> inside_root(Path("/data/camvid/../../etc/passwd"), Path("/data/camvid"))
    False
    """
    return path.resolve().is_relative_to(root.resolve())


def outside_root_entry(path: Path, root: Path, source: str, name: str | None = None) -> SkippedEntry:
    """The :class:`SkippedEntry` of a listed ``path`` that leaves ``root`` (``source``: the list and line)."""
    message = f"{source}: {path} leaves the data root {root} (it resolves to {path.resolve()}): refused"
    return SkippedEntry(OUTSIDE_ROOT, path, message, name)


def refuse_lost(what: str, lost: Sequence[SkippedEntry], missing: MissingPolicy) -> None:
    """Raise for the entries a list reader could not use, or let ``missing="skip"`` keep them as records.

    Paths outside the root raise :class:`OutsideRootError` first (they are never a matter of skipping a
    missing file); then, with ``missing="raise"``, missing files raise :class:`MissingFilesError`.
    """
    if missing != "raise":
        return
    outside = [e for e in lost if e.kind == OUTSIDE_ROOT]
    if outside:
        raise OutsideRootError(what, outside)
    if lost:
        raise MissingFilesError(what, [e.path for e in lost], lost)


def check_missing_policy(missing: str) -> MissingPolicy:
    """Validate a ``missing=`` argument ("raise" or "skip")."""
    if missing not in ("raise", "skip"):
        raise ValueError(f'missing must be "raise" or "skip", got {missing!r}')
    return "raise" if missing == "raise" else "skip"


@dataclass(frozen=True)
class Item:
    """Where one sample lives on disk; ``mask`` is None for image-only items."""

    name: str
    image: Path
    mask: Path | None = None


def default_palette(num_classes: int) -> Palette:
    """The PASCAL-VOC bit-interleaved colour map: ``num_classes`` distinct RGB triples."""
    palette: Palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for shift in range(8):
            r |= ((c >> 0) & 1) << (7 - shift)
            g |= ((c >> 1) & 1) << (7 - shift)
            b |= ((c >> 2) & 1) << (7 - shift)
            c >>= 3
        palette.append((r, g, b))
    return palette


def check_resize(resize: Sequence[int] | None) -> tuple[int, int] | None:
    """Validate a ``(H, W)`` resize argument."""
    if resize is None:
        return None
    if len(resize) != 2 or any(int(v) < 1 for v in resize):
        raise ValueError(f"resize must be (H, W) with positive sizes, got {resize!r}")
    return int(resize[0]), int(resize[1])


def read_image(path: Path, resize: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); greyscale is replicated to 3 channels.

    With ``resize=(H, W)`` the image is resized bilinearly (see :func:`resize_image`).
    """
    with Image.open(path) as file:
        img: Image.Image = file
        check_pixels(img, path)
        img.load()
        if img.mode in ("I", "I;16", "I;16B", "F"):
            arr = np.asarray(img, dtype=np.float64)
            top = max(float(arr.max()), 1.0)
            img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return resize_image(rgb, resize)


def resize_image(image: np.ndarray, resize: tuple[int, int] | None) -> np.ndarray:
    """Bilinear resize of a uint8 image (H, W, 3) to ``resize=(H, W)``; antialiased when shrinking."""
    if resize is None or image.shape[:2] == resize:
        return image
    img = Image.fromarray(image).resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def read_mask_raw(path: Path) -> np.ndarray:
    """Decode a mask file without mapping: (H, W) for index/greyscale PNGs, (H, W, 3) for RGB ones."""
    with Image.open(path) as file:
        img: Image.Image = file
        check_pixels(img, path)
        img.load()
        if img.mode in ("RGB", "RGBA"):
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
        if img.mode == "LA":
            img = img.convert("L")
        if img.mode not in ("P", "L", "1", "I", "I;16", "I;16B"):
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
        return np.asarray(img).astype(np.int64)


def map_index_mask(
    values: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int = IGNORE_INDEX,
    void_values: Sequence[int] = (),
    strict: bool = True,
    source: object = "mask",
) -> np.ndarray:
    """Map an index mask (H, W) to class ids ∪ {ignore_index}, int64 (H, W).

    ``void_values`` become ``ignore_index``. Other values outside ``0 .. num_classes - 1`` (and not
    already ``ignore_index``) raise a ValueError naming ``source``, or become ``ignore_index`` when
    ``strict`` is False.
    """
    out = values.astype(np.int64, copy=True)
    for v in void_values:
        out[values == v] = ignore_index
    bad = ((out < 0) | (out >= num_classes)) & (out != ignore_index)
    if bad.any():
        if strict:
            found = sorted(int(v) for v in np.unique(out[bad]))
            raise ValueError(
                f"{source}: mask values {found[:10]} are outside 0..{num_classes - 1} and are not the "
                f"ignore index {ignore_index} (declare them in void_values, or pass strict_masks=False "
                "to map them to the ignore index)"
            )
        out[bad] = ignore_index
    return out


def map_rgb_mask(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Map an RGB mask (H, W, 3) to class ids via ``palette`` (class i has colour palette[i]).

    Colours that are not in the palette become ``ignore_index``. Returns int64 (H, W).
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_codes, kind="stable")
    sorted_codes = pal_codes[order]
    pos = np.searchsorted(sorted_codes, codes).clip(0, len(sorted_codes) - 1)
    hit = sorted_codes[pos] == codes
    return np.where(hit, order[pos], ignore_index).astype(np.int64)


def resize_mask(mask: np.ndarray, resize: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of a mapped mask (H, W) with values in 0..255 to ``resize=(H, W)``."""
    if resize is None or mask.shape == resize:
        return mask
    img = Image.fromarray(mask.astype(np.uint8), mode="L")
    img = img.resize((resize[1], resize[0]), Image.Resampling.NEAREST)
    return np.asarray(img).astype(np.int64)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) array -> contiguous uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def mask_to_tensor(mask: np.ndarray) -> torch.Tensor:
    """int (H, W) array -> contiguous int64 tensor (H, W)."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))


_D = TypeVar("_D", bound="ImageDataset")


class ImageDataset(Dataset[Sample]):
    """A list of :class:`Item` decoded on demand; the base of every dataset here.

    Labeled data sets are :class:`SegmentationDataset` subclasses (its hooks say how to list the items
    and map the masks); images without masks are :class:`~cct_train.data.unlabeled.UnlabeledFolder`.
    Datasets built with ``missing="skip"`` record the entries they left out in ``skipped_entries``.
    """

    skipped_entries: tuple[SkippedEntry, ...] = ()

    def __init__(self, items: Sequence[Item], resize: Sequence[int] | None = None) -> None:
        self._items: list[Item] = list(items)
        self.resize = check_resize(resize)
        self._with_masks = True

    # -- ids ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Sample ids, in dataset order."""
        return [item.name for item in self._items]

    @property
    def items(self) -> list[Item]:
        """The on-disk items (name, image path, mask path), in dataset order."""
        return list(self._items)

    @property
    def has_masks(self) -> bool:
        """Whether samples carry a ``"mask"``."""
        return self._with_masks and all(item.mask is not None for item in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def subset(self: _D, names: Sequence[str]) -> _D:
        """A copy restricted to ``names`` (kept in dataset order); unknown names raise ValueError."""
        clone = copy.copy(self)
        clone._items = select_items(self._items, names, type(self).__name__)
        return clone

    def without_masks(self: _D) -> _D:
        """A copy whose samples have no ``"mask"`` (the same images used as unlabeled data)."""
        clone = copy.copy(self)
        clone._with_masks = False
        return clone

    # -- decoding ----------------------------------------------------------------------------
    def _load_image(self, item: Item) -> np.ndarray:
        """Decode the image at its own size: uint8 (H, W, 3)."""
        return read_image(item.image)

    def _load_mask(self, item: Item) -> np.ndarray:
        """Decode and map the mask at its own size: int64 (H, W) in class ids ∪ {ignore_index}."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        item = self._items[index]
        image = _named(lambda: self._load_image(item), item.image, "image", item.name)
        mask: np.ndarray | None = None
        if self._with_masks and item.mask is not None:
            mask = _named(lambda: self._load_mask(item), item.mask, "mask", item.name)
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"{item.mask}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from its image "
                    f"{item.image} ({image.shape[1]}x{image.shape[0]})"
                )
        sample: Sample = {"image": image_to_tensor(resize_image(image, self.resize)), "name": item.name}
        if mask is not None:
            sample["mask"] = mask_to_tensor(resize_mask(mask, self.resize))
        return sample


_T = TypeVar("_T")


def _named(load: Callable[[], _T], path: Path, role: str, name: str) -> _T:
    """``load()``, with a failure that does not name ``path`` turned into a :class:`SampleError` that does
    (PIL's "image file is truncated" names no file; with ``data.check=off`` nothing else would)."""
    try:
        return load()
    except SampleError:
        raise
    except Exception as error:
        if str(path) in str(error):  # already named (a mask value outside the classes...): kept as said
            raise SampleError(str(error)) from None
        raise SampleError(
            f"{path}: the {role} of sample {name!r} cannot be decoded ({type(error).__name__}: {error}). "
            "Run `cct data check` to list every such file, replace or remove it, or set "
            "data.skip_bad_samples=true to train without the bad samples."
        ) from None


class SegmentationDataset(ImageDataset):
    """A labeled data set on disk, from one template: a data set is a subclass that fills in the hooks it
    differs in; the constructor, the same for all, does the rest (checks the split and the label space,
    selects ``names``, records what ``missing="skip"`` left out).

    The hooks:

    - ``title`` (how messages name it), ``splits`` (the splits it accepts; empty: any name) and
      ``default_split`` (the split when none is given);
    - ``class_names`` and ``palette`` (one RGB triple per class; empty: :func:`default_palette`): its label
      space, as class attributes, or set by :meth:`configure` where an option chooses it;
      ``void_values`` (mask values read as ignore) and ``ignore_index`` likewise;
    - :meth:`configure`: its own options, the keyword arguments beyond the common ones below
      (``data.options`` of a training config);
    - :meth:`find_root`: where its files are (default: ``root``, which must be a directory);
    - :meth:`list_items` (the one hook every data set writes): its samples of ``self.split``, in order;
    - :meth:`load_mask`: a mask file -> class ids; the default reads an 8-bit index PNG whose values are the
      class ids (``void_values`` -> ``ignore_index``).

    Common arguments: ``root``; ``split``; ``names`` (keep only these sample ids); ``resize`` (an optional
    CPU resize ``(H, W)``: bilinear images, nearest masks); ``missing``: ``"raise"`` (a
    :class:`MissingFilesError` listing every missing file) or ``"skip"`` (those entries are left out and
    recorded in ``skipped_entries``).

    Attributes: ``root``, ``split``, ``num_classes``, ``class_names`` (tuple of str), ``palette``,
    ``ignore_index``, ``skipped_entries``.
    """

    title: ClassVar[str] = "data set"
    splits: ClassVar[tuple[str, ...]] = ()
    default_split: ClassVar[str | None] = "train"
    class_names: tuple[str, ...] = ()
    palette: Sequence[Sequence[int]] = ()
    void_values: tuple[int, ...] = ()
    ignore_index: int = IGNORE_INDEX
    strict_masks: bool = True
    """Mask values outside the classes (and not void) raise a ValueError naming the file; False: ignored."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        names: Sequence[str] | None = None,
        resize: Sequence[int] | None = None,
        missing: MissingPolicy = "raise",
        **options: Any,
    ) -> None:
        split = self.default_split if split is None else split
        if self.splits and split not in self.splits:
            raise ValueError(f"{self.title} split must be one of {self.splits}, got {split!r}")
        self.split = split
        self.missing = check_missing_policy(missing)
        self.root = self.find_root(Path(root))
        self._configure(options)
        self._check_label_space()
        items, skipped = self.list_items()
        super().__init__(
            select_items(items, names, f"{type(self).__name__} {self.split or self.root}"), resize
        )
        self.skipped_entries = tuple(skipped)

    # -- hooks -------------------------------------------------------------------------------
    def find_root(self, root: Path) -> Path:
        """Hook: the folder the data set's files are under (default: ``root``; FileNotFoundError naming it
        when it is not a directory)."""
        return require_dir(root, f"{self.title} root")

    def configure(self) -> None:
        """Hook: check and keep the data set's own options (its keyword arguments, e.g.
        ``def configure(self, *, classes: int = 37)``) and what they choose (``class_names``...), before
        :meth:`list_items` runs. The default takes none."""

    def list_items(self) -> tuple[list[Item], list[SkippedEntry]]:
        """Hook: the items of ``self.split`` under ``self.root`` in dataset order, and the entries left out.

        Missing files follow ``self.missing``: :func:`split_missing` does it for a list of candidate
        items (raise listing every missing file, or leave them out as :class:`SkippedEntry` records).
        """
        raise NotImplementedError(f"{type(self).__name__} must define list_items()")

    def load_mask(self, path: Path) -> np.ndarray:
        """Hook: decode the mask file ``path`` and map it to class ids ∪ {``ignore_index``}: int64 (H, W).

        Default: an 8-bit index PNG whose values are the class ids; ``void_values`` become
        ``ignore_index``, other values outside the classes raise (or, ``strict_masks=False``, are ignored).
        """
        return self.map_index(self.index_values(path), path)

    # -- the template's machinery ------------------------------------------------------------
    def index_values(self, path: Path) -> np.ndarray:
        """The raw (H, W) values of an index / id PNG mask; an RGB mask is an error naming the file."""
        raw = read_mask_raw(path)
        if raw.ndim != 2:
            raise ValueError(f"{path}: {self.title} masks must be 8-bit index PNGs, got an RGB image")
        return raw

    def map_index(self, values: np.ndarray, path: Path) -> np.ndarray:
        """Index values (H, W) that are class ids -> int64 (H, W), with ``void_values`` -> ``ignore_index``
        and other values outside the classes an error naming ``path`` (or ignored: ``strict_masks``)."""
        return map_index_mask(
            values,
            self.num_classes,
            ignore_index=self.ignore_index,
            void_values=self.void_values,
            strict=self.strict_masks,
            source=path,
        )

    def _load_mask(self, item: Item) -> np.ndarray:
        assert item.mask is not None
        return self.load_mask(item.mask)

    def _configure(self, options: dict[str, Any]) -> None:
        """:meth:`configure` with ``options``; an unknown one is a TypeError naming it and the known ones."""
        known = inspect.signature(self.configure).parameters
        unknown = sorted(set(options) - set(known))
        if unknown:
            takes = ", ".join(known) or "none"
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {unknown} (data.options in a config); "
                f"its options: {takes}; every data set takes root, split, names, resize, missing"
            )
        self.configure(**options)

    def _check_label_space(self) -> None:
        names = tuple(self.class_names)
        if not 1 <= len(names) <= 255:
            raise ValueError(f"{self.title}: the number of classes must be in 1..255, got {len(names)}")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < len(names):
            raise ValueError(f"ignore_index must be in {len(names)}..255, got {self.ignore_index}")
        palette = [_rgb(c) for c in self.palette] if self.palette else default_palette(len(names))
        if len(palette) < len(names):
            raise ValueError(f"palette has {len(palette)} colours for {len(names)} classes")
        self.class_names = names
        self.palette = palette[: len(names)]

    @property
    def num_classes(self) -> int:
        """The number of classes (``len(class_names)``)."""
        return len(self.class_names)


def _rgb(colour: Sequence[int]) -> tuple[int, int, int]:
    if len(colour) != 3 or any(not 0 <= int(c) <= 255 for c in colour):
        raise ValueError(f"palette colours must be RGB triples in 0..255, got {colour!r}")
    return int(colour[0]), int(colour[1]), int(colour[2])


def select_items(items: Sequence[Item], names: Sequence[str] | None, what: str) -> list[Item]:
    """Keep the items whose name is in ``names`` (dataset order); None keeps all."""
    if names is None:
        return list(items)
    wanted = set(names)
    known = {item.name for item in items}
    missing = sorted(wanted - known)
    if missing:
        raise ValueError(f"{what}: {len(missing)} unknown sample names, e.g. {missing[:5]}")
    return [item for item in items if item.name in wanted]


def require_dir(path: Path, what: str) -> Path:
    """Raise FileNotFoundError naming ``path`` unless it is a directory."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: directory not found: {path}")
    return path


def split_missing(
    items: Sequence[Item], what: str, missing: MissingPolicy, root: Path | None = None
) -> tuple[list[Item], list[SkippedEntry]]:
    """Items whose image and mask exist, and a :class:`SkippedEntry` per missing file of the others.

    With ``root``, a file that leaves it (:func:`inside_root`) is an ``"outside-root"`` entry instead,
    not opened. With ``missing="raise"`` such entries raise (:func:`refuse_lost`).
    """
    kept: list[Item] = []
    skipped: list[SkippedEntry] = []
    for item in items:
        lost: list[SkippedEntry] = []
        for role, path in (("image", item.image), ("mask", item.mask)):
            if path is None:
                continue
            if root is not None and not inside_root(path, root):
                lost.append(outside_root_entry(path, root, what, item.name))
            elif not path.is_file():
                lost.append(
                    SkippedEntry("missing", path, f"{path}: {role} of {item.name!r} not found", item.name)
                )
        if lost:
            skipped.extend(lost)
        else:
            kept.append(item)
    refuse_lost(what, skipped, missing)
    return kept, skipped
