"""Data checks: every problem of a config's data sets, reported at once (``cct data check``, trainer preflight).

:func:`check_data` builds the data sets of a :class:`~cct_train.config.Config` the way training does
(the train split divided into labeled / unlabeled parts by ``data.split``, ``data.unlabeled_root``, the
val split) and collects a :class:`Problem` for each of:

* ``missing``: a listed image or mask file does not exist (every one, not the first only);
* ``outside-root``: a split-list path that leaves the data root (``../``, an absolute path elsewhere, a link
  whose target lies elsewhere): refused and never opened;
* ``unknown-name``: a name in a split list (``train.txt``, ``data.split.labeled_list``...) matches no sample;
* ``unreadable`` / ``truncated``: an image or mask that does not decode completely (deep mode);
* ``size-mismatch``: a mask whose size differs from its image (deep);
* ``mask-values``: mask values outside ``0 .. num_classes - 1`` that are neither ignore nor void (deep);
* ``palette``: RGB mask colours that are not in the configured palette (deep);
* ``empty``: no labeled sample; no unlabeled one in CCT mode; an empty val split;
* ``duplicate``: a name listed twice, one image file under two names, a name both labeled and unlabeled;
* ``dataset`` / ``split`` / ``config``: a data set or split that cannot be built at all.

Quick mode (``deep=False``) does only the list-level checks (files exist and are not empty, duplicates,
empty sets): a stat per file. Deep mode decodes every file, in parallel (a torch DataLoader), with a
progress bar.

For the trainer: :func:`preflight` raises :class:`DataCheckError` on fatal problems, or, with
``skip_bad_samples=True``, warns with a count and leaves the bad samples to :func:`samples_to_skip`,
:func:`skipping_config` and :func:`drop_samples`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import ImageFile
from torch.utils.data import DataLoader, Dataset

from cct_train.data.base import (
    IGNORE_INDEX,
    ImageDataset,
    Item,
    MissingFilesError,
    OutsideRootError,
    SkippedEntry,
    read_mask_raw,
)
from cct_train.data.camvid import CamVid
from cct_train.data.folder import FolderDataset
from cct_train.data.unlabeled import UnlabeledFolder

if TYPE_CHECKING:
    from rich.console import Console

    from cct_train.config import Config

TRAIN = "train"
UNLABELED_ROOT = "unlabeled_root"
VAL = "val"
SPLITS: tuple[str, ...] = (TRAIN, UNLABELED_ROOT, VAL)
"""The parts of the data a :class:`Problem` can belong to (``Problem.split``)."""

SAMPLE_KINDS: frozenset[str] = frozenset(
    {
        "missing",
        "outside-root",
        "unknown-name",
        "unreadable",
        "truncated",
        "size-mismatch",
        "mask-values",
        "palette",
        "duplicate",
    }
)
"""Problems of one sample (or list entry): ``skip_bad_samples`` can drop them; the others stop training."""

_D = TypeVar("_D", bound=ImageDataset)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data.

    ``path``: the file (or list, or folder) concerned; ``kind``: one of the kinds in the module docstring;
    ``message``: what is wrong; ``fatal``: whether training cannot go on with it; ``name``: the sample id
    when the problem is one sample's; ``split``: ``"train"``, ``"unlabeled_root"`` or ``"val"``.
    """

    path: str
    kind: str
    message: str
    fatal: bool = True
    name: str | None = None
    split: str | None = None

    def line(self) -> str:
        """One line, the whole path in it (greppable logs): ``FATAL train missing: <path>: <message>``."""
        return f"{'FATAL' if self.fatal else 'warn '} {self.split or '-'} {self.kind}: {self.path}: {self.message}"


@dataclass
class DataReport:
    """What :func:`check_data` found: ``problems``, ``counts`` (samples per part) and ``checked`` items.

    ``counts`` has ``train``, ``labeled``, ``unlabeled`` (the unlabeled part of the train split),
    ``unlabeled_root`` and ``val``; ``checked`` counts the files decoded (deep) or entries listed (quick).
    """

    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    deep: bool = True

    @property
    def fatal(self) -> bool:
        """Whether any problem is fatal."""
        return any(p.fatal for p in self.problems)

    @property
    def n_fatal(self) -> int:
        """The number of fatal problems."""
        return sum(p.fatal for p in self.problems)

    def bad_names(self, split: str, *, fatal_only: bool = True) -> set[str]:
        """Names of the samples of ``split`` ("train", "unlabeled_root", "val") that have a problem.

        Duplicate entries are not counted: the first of them is a good sample (data sets built with
        ``missing="skip"`` keep it and drop the others).
        """
        return {
            p.name
            for p in self.problems
            if p.split == split
            and p.name is not None
            and p.kind != "duplicate"
            and (p.fatal or not fatal_only)
        }

    def summary(self) -> str:
        """One line: problems, fatal ones, per-part problem counts and sample counts."""
        c = self.counts
        mode = "samples decoded" if self.deep else "samples listed (quick: no decoding)"
        per_split = Counter(p.split or "config" for p in self.problems)
        where = ", ".join(f"{k} {v}" for k, v in sorted(per_split.items()))
        samples = (
            f"train {c.get('train', 0)} ({c.get('labeled', 0)} labeled, {c.get('unlabeled', 0)} unlabeled), "
            f"unlabeled_root {c.get(UNLABELED_ROOT, 0)}, val {c.get(VAL, 0)}"
        )
        found = f"{len(self.problems)} problem(s), {self.n_fatal} fatal" + (f" ({where})" if where else "")
        return f"{found}; {self.checked} {mode}; samples: {samples}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``ok``, ``deep``, ``checked``, ``counts``, ``summary``, ``problems``."""
        return {
            "ok": not self.fatal,
            "deep": self.deep,
            "checked": self.checked,
            "counts": dict(self.counts),
            "n_problems": len(self.problems),
            "n_fatal": self.n_fatal,
            "summary": self.summary(),
            "problems": [asdict(p) for p in self.problems],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (parents created); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    def format(self, limit: int | None = 50) -> str:
        """Plain text: one line per problem (at most ``limit``), then :meth:`summary`."""
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [p.line() for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        lines.append(self.summary())
        return "\n".join(lines)


class DataCheckError(ValueError):
    """Fatal data problems; ``report`` holds them all and the message lists them."""

    def __init__(self, report: DataReport) -> None:
        self.report = report
        super().__init__(
            "the data check found fatal problems (run `cct data check` for the full report; set "
            "data.skip_bad_samples to drop bad samples):\n" + report.format(limit=30)
        )


class DataWarning(UserWarning):
    """Bad samples skipped (``skip_bad_samples``), or other data problems that do not stop training."""


# -- building the data sets the way training does ----------------------------------------------------


def skipping_config(config: Config) -> Config:
    """A copy of ``config`` whose data sets are built with ``missing="skip"`` (via ``data.options``).

    Such data sets leave out list entries whose files are missing (and duplicate names) instead of
    raising; the datasets of this package all accept the option.
    """
    copy = config.model_copy(deep=True)
    copy.data.options = {**copy.data.options, "missing": "skip"}
    return copy


def _problem_from_entry(entry: SkippedEntry, split: str) -> Problem:
    return Problem(str(entry.path), entry.kind, entry.message, True, entry.name, split)


def _build(config: Config, split_name: str, part: str) -> tuple[ImageDataset | None, list[Problem]]:
    """The data set of ``split_name`` built with missing="skip", and the problems met building it."""
    from cct_train.data_setup import _dataset

    root = str(config.data.root)
    try:
        try:
            dataset: ImageDataset = _dataset(skipping_config(config), split_name)
        except TypeError as error:  # a data set that does not know missing=: build it as training does
            if "missing" not in str(error):
                raise
            dataset = _dataset(config, split_name)
    except OutsideRootError as error:
        return None, [_problem_from_entry(e, part) for e in error.entries]
    except MissingFilesError as error:
        entries = error.entries or [
            SkippedEntry("missing", p, f"{error.what}: {p} not found") for p in error.paths
        ]
        return None, [_problem_from_entry(e, part) for e in entries]
    except Exception as error:  # any failure to build is one fatal problem, with its message
        message = f"the {split_name!r} split of the {config.data.dataset} data set cannot be built: {error}"
        return None, [Problem(root, "dataset", message, True, None, part)]
    return dataset, [_problem_from_entry(e, part) for e in dataset.skipped_entries]


def _list_problems(dataset: ImageDataset, part: str, reported: set[str]) -> list[Problem]:
    """Duplicate names / files among the items; files that are missing or empty (a stat per file)."""
    problems: list[Problem] = []
    names = Counter(item.name for item in dataset.items)
    for name, count in names.items():
        if count > 1:
            first = next(i for i in dataset.items if i.name == name)
            message = f"sample name {name!r} is listed {count} times"
            problems.append(Problem(str(first.image), "duplicate", message, True, name, part))
    owners: dict[Path, list[str]] = {}
    for item in dataset.items:
        owners.setdefault(item.image, []).append(item.name)
    for image, owned in owners.items():
        if len(set(owned)) > 1:
            message = f"the same image file is listed under {len(set(owned))} names: {sorted(set(owned))[:5]}"
            problems.append(Problem(str(image), "duplicate", message, False, None, part))
    for item in dataset.items:
        for role, path in (("image", item.image), ("mask", item.mask)):
            if path is None or str(path) in reported:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                problems.append(
                    Problem(str(path), "missing", f"{role} of {item.name!r} not found", True, item.name, part)
                )
                reported.add(str(path))
                continue
            if size == 0:
                problems.append(
                    Problem(
                        str(path), "unreadable", f"{role} is an empty file (0 bytes)", True, item.name, part
                    )
                )
                reported.add(str(path))
    return problems


# -- decoding every file -------------------------------------------------------------------------------


def _decode_kind(error: BaseException) -> str:
    return "truncated" if "truncat" in str(error).lower() else "unreadable"


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
        message = f"mask cannot be decoded: {_describe(error)}"
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
class _Task:
    part: str
    dataset: int
    index: int
    with_mask: bool
    mask_fatal: bool = True


class _CheckTasks(Dataset[list[Problem]]):
    """Decodes one item per index and returns its problems (an empty list when it is fine)."""

    def __init__(self, datasets: Sequence[ImageDataset], tasks: Sequence[_Task]) -> None:
        self.datasets = list(datasets)
        self.tasks = list(tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> list[Problem]:
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
            message = f"image cannot be decoded: {_describe(error)}"
            problems.append(
                Problem(str(item.image), _decode_kind(error), message, True, item.name, task.part)
            )
        if task.with_mask and item.mask is not None:
            found = _mask_problems(dataset, item, size, task.part)
            if not task.mask_fatal:  # an unlabeled sample of the train split: its mask is not used
                note = " (an unlabeled sample in this split: its mask is not used)"
                found = [replace(p, fatal=False, message=p.message + note) for p in found]
            problems.extend(found)
        return problems


def _identity(problems: list[Problem]) -> list[Problem]:
    return problems


def _decode_all(
    datasets: Sequence[ImageDataset], tasks: Sequence[_Task], workers: int, progress: bool
) -> list[Problem]:
    if not tasks:
        return []
    loader = DataLoader(
        _CheckTasks(datasets, tasks),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
    )
    batches: Iterable[list[Problem]] = iter(loader)  # workers start before any progress-bar thread
    if progress:
        from cct_train.progress import progress_iter

        batches = progress_iter(batches, f"checking {len(tasks)} samples", total=len(tasks))
    return [problem for batch in batches for problem in batch]


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """PIL must fail on truncated files while the check runs (``LOAD_TRUNCATED_IMAGES`` off)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


# -- the check -----------------------------------------------------------------------------------------


def _read_names(path: Path) -> list[str]:
    return [
        line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def _split_problems(
    config: Config, names: list[str], skipped: set[str]
) -> tuple[list[str], list[str], list[Problem]]:
    """The labeled / unlabeled names (unknown ones removed) and the problems of the split lists."""
    from cct_train.data_setup import split_names

    split = config.data.split
    problems: list[Problem] = []
    known = set(names)
    lists = [(split.labeled_list, "labeled"), (split.unlabeled_list, "unlabeled")]
    for path, role in lists:
        if path is None or not path.is_file():
            continue
        listed = _read_names(path)
        for name, count in Counter(listed).items():
            if count > 1:
                message = f"{role} name {name!r} is listed {count} times"
                problems.append(Problem(str(path), "duplicate", message, False, name, TRAIN))
            if name not in known and name not in skipped:
                message = f"{role} name {name!r} is not a sample of the {config.data.train_split!r} split"
                problems.append(Problem(str(path), "unknown-name", message, True, name, TRAIN))
    try:
        labeled, unlabeled = split_names(config, names)
    except Exception as error:
        where = str(split.labeled_list or config.data.root)
        problems.append(
            Problem(where, "split", f"the labeled / unlabeled split fails: {error}", True, None, TRAIN)
        )
        return [], [], problems
    labeled = list(dict.fromkeys(n for n in labeled if n in known))
    unlabeled = list(dict.fromkeys(n for n in unlabeled if n in known))
    both = sorted(set(labeled) & set(unlabeled))
    if both:
        message = f"{len(both)} name(s) are both labeled and unlabeled, e.g. {both[:5]}"
        problems.append(
            Problem(str(split.unlabeled_list or split.labeled_list), "duplicate", message, False, None, TRAIN)
        )
    return labeled, unlabeled, problems


def default_workers() -> int:
    """Decoding processes of the deep check: ``min(4, os.cpu_count())``."""
    return min(4, os.cpu_count() or 1)


def check_data(
    config: Config, *, deep: bool = True, workers: int | None = None, progress: bool = True
) -> DataReport:
    """Check the data of ``config`` (train split, its labeled / unlabeled parts, unlabeled_root, val split).

    Every problem is collected (none raises); see the module docstring for the kinds. ``deep`` decodes
    every image and mask with ``workers`` processes (default :func:`default_workers`; 0: in this
    process) and a progress bar when ``progress``; otherwise only the list-level checks run.
    """
    data = config.data
    report = DataReport(deep=deep)
    problems = report.problems
    datasets: list[ImageDataset] = []
    tasks: list[_Task] = []
    reported: set[str] = set()

    def add(
        dataset: ImageDataset, part: str, found: list[Problem], wanted: Iterable[tuple[str, bool, bool]]
    ) -> None:
        problems.extend(found)
        reported.update(p.path for p in found if p.kind in ("missing", "unknown-name"))
        problems.extend(_list_problems(dataset, part, reported))
        datasets.append(dataset)
        position = {item.name: i for i, item in enumerate(dataset.items)}
        bad = {p.path for p in problems if p.split == part}
        for name, with_mask, mask_fatal in wanted:
            item = dataset.items[position[name]]
            if str(item.image) in bad or (with_mask and str(item.mask) in bad):
                continue
            tasks.append(_Task(part, len(datasets) - 1, position[name], with_mask, mask_fatal))

    # the training split, divided as training divides it
    train, found = _build(config, data.train_split, TRAIN)
    labeled: list[str] = []
    unlabeled: list[str] = []
    if train is not None:
        expected = data.num_classes
        actual = getattr(train, "num_classes", None)
        if expected is not None and actual is not None and int(actual) != expected:
            message = f"data.num_classes is {expected} but the {data.dataset} data set has {actual} classes"
            problems.append(Problem(str(data.root), "config", message, True, None, TRAIN))
        names = list(dict.fromkeys(train.names))
        skipped = {e.name for e in train.skipped_entries if e.name is not None}
        labeled, unlabeled, split_found = _split_problems(config, names, skipped)
        add(
            train,
            TRAIN,
            found + split_found,
            [(n, True, True) for n in labeled] + [(n, True, False) for n in unlabeled],
        )
        report.counts[TRAIN] = len(names)
    else:
        problems.extend(found)
        report.counts[TRAIN] = 0
    report.counts["labeled"] = len(labeled)
    report.counts["unlabeled"] = len(unlabeled)
    if not labeled:
        where = str(data.split.labeled_list or data.root)
        message = (
            f"no labeled sample in the {data.train_split!r} split (nothing to train the main decoder on)"
        )
        problems.append(Problem(where, "empty", message, True, None, TRAIN))

    # extra unlabeled images
    n_root = 0
    if data.unlabeled_root is not None:
        try:
            extra: ImageDataset | None = UnlabeledFolder(
                data.unlabeled_root, resize=data.resize, missing="skip"
            )
        except Exception as error:
            message = f"unlabeled images cannot be listed: {error}"
            problems.append(Problem(str(data.unlabeled_root), "dataset", message, True, None, UNLABELED_ROOT))
            extra = None
        if extra is not None:
            found = [_problem_from_entry(e, UNLABELED_ROOT) for e in extra.skipped_entries]
            add(extra, UNLABELED_ROOT, found, [(n, False, False) for n in extra.names])
            n_root = len(extra)
    report.counts[UNLABELED_ROOT] = n_root
    needs_unlabeled = config.train.mode == "cct" and bool(config.model.perturbations)
    if needs_unlabeled and not unlabeled and not n_root:
        message = (
            "CCT needs unlabeled images but there are none: set data.split.n_labeled, data.split.unlabeled_list "
            "or data.unlabeled_root (or use train.mode=supervised)"
        )
        where = str(data.unlabeled_root or data.split.unlabeled_list or data.root)
        problems.append(Problem(where, "empty", message, True, None, TRAIN))

    # validation
    report.counts[VAL] = 0
    if data.val_split:
        val, found = _build(config, data.val_split, VAL)
        if val is not None:
            add(val, VAL, found, [(n, True, True) for n in dict.fromkeys(val.names)])
            report.counts[VAL] = len(val)
            if not len(val):
                message = f"the val split {data.val_split!r} has no sample"
                problems.append(Problem(str(data.root), "empty", message, True, None, VAL))
        else:
            problems.extend(found)

    if deep:
        with _strict_decoding():
            n_workers = default_workers() if workers is None else max(0, workers)
            problems.extend(_decode_all(datasets, tasks, n_workers, progress))
        report.checked = len(tasks)
    else:
        report.checked = sum(len(d) for d in datasets)
    return report


# -- for the trainer -------------------------------------------------------------------------------------


def preflight(
    config: Config,
    *,
    deep: bool = True,
    skip_bad_samples: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> DataReport:
    """The data check at the start of training; returns the report when training can go on.

    Raises :class:`DataCheckError` (every problem in its message) when a problem is fatal. With
    ``skip_bad_samples`` the fatal problems of single samples (kinds in :data:`SAMPLE_KINDS`) are
    tolerated, with a :class:`DataWarning` counting them; training must then build its data with
    :func:`skipping_config` and drop :func:`samples_to_skip`. Problems that are not one sample's
    (an empty labeled set, a data set that cannot be built...) always raise, and so does a labeled set
    that skipping would leave empty.
    """
    report = check_data(config, deep=deep, workers=workers, progress=progress)
    if not report.fatal:
        return report
    if not skip_bad_samples:
        raise DataCheckError(report)
    stopping = [p for p in report.problems if p.fatal and p.kind not in SAMPLE_KINDS]
    skipped = samples_to_skip(report)
    left = report.counts.get("labeled", 0) - len(skipped[TRAIN])
    if report.counts.get("labeled", 0) and left <= 0:
        message = "skipping the bad samples would leave no labeled sample"
        stopping.append(Problem(str(config.data.root), "empty", message, True, None, TRAIN))
        report.problems.append(stopping[-1])
    if stopping:
        raise DataCheckError(report)
    n_skip = sum(p.fatal for p in report.problems)
    per_split = ", ".join(f"{k} {len(v)}" for k, v in skipped.items() if v)
    warnings.warn(
        f"skipping bad samples: {n_skip} problem(s), {sum(len(v) for v in skipped.values())} sample(s) dropped"
        f"{f' ({per_split})' if per_split else ''}; run `cct data check` for the list",
        DataWarning,
        stacklevel=2,
    )
    return report


def samples_to_skip(report: DataReport) -> dict[str, set[str]]:
    """Names to drop per part: ``{"train": {...}, "unlabeled_root": {...}, "val": {...}}``.

    Entries whose files are missing are among them too; data sets built with :func:`skipping_config`
    do not have those names at all.
    """
    return {split: report.bad_names(split) for split in SPLITS}


def drop_samples(dataset: _D, names: Iterable[str]) -> _D:
    """``dataset`` without the samples named in ``names`` (the same object when none of them is in it)."""
    drop = set(names)
    keep = [n for n in dataset.names if n not in drop]
    return dataset if len(keep) == len(dataset) else dataset.subset(keep)


# -- output ------------------------------------------------------------------------------------------------


def print_report(report: DataReport, console: Console, limit: int | None = 200) -> None:
    """The problems (at most ``limit``), then the summary line.

    On a terminal: a rich table. Elsewhere (CI logs, ``> file``): :meth:`Problem.line` per problem, never
    wrapped, so that a log can be searched for a file name (a table at 80 columns breaks paths apart).
    """
    from rich.markup import escape
    from rich.table import Table

    if report.problems and not console.is_terminal:
        shown = report.problems if limit is None else report.problems[:limit]
        for p in shown:
            console.print(p.line(), markup=False, highlight=False, soft_wrap=True)
        if len(shown) < len(report.problems):
            console.print(f"... {len(report.problems) - len(shown)} more (see --json)", soft_wrap=True)
    elif report.problems:
        table = Table(title="data problems", show_lines=False)
        table.add_column("", no_wrap=True)
        table.add_column("split", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("file", overflow="fold")
        table.add_column("problem", overflow="fold")
        shown = report.problems if limit is None else report.problems[:limit]
        for p in shown:
            flag = "[bold red]fatal[/]" if p.fatal else "[yellow]warn[/]"
            table.add_row(flag, p.split or "", p.kind, escape(p.path), escape(p.message))
        console.print(table)
        if len(shown) < len(report.problems):
            console.print(f"... {len(report.problems) - len(shown)} more (see --json)")
    style = "bold red" if report.fatal else ("yellow" if report.problems else "bold green")
    console.print(f"[{style}]{escape(report.summary())}[/]", soft_wrap=True)
