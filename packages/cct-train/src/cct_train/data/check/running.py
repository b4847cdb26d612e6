"""Running the check: the config's data sets built the way training builds them, list-level problems
(missing, outside-root, unknown names, duplicates, empty sets), then the deep decoding; and the
trainer's preflight.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cct_train.data.base import (
    ImageDataset,
    MissingFilesError,
    OutsideRootError,
    SkippedEntry,
)
from cct_train.data.build import build_split_dataset, split_names
from cct_train.data.check.decoding import DecodeTask, decode_all, strict_decoding
from cct_train.data.check.problems import (
    SAMPLE_KINDS,
    SPLITS,
    TRAIN,
    UNLABELED_ROOT,
    VAL,
    DataCheckError,
    DataReport,
    DataWarning,
    Problem,
)
from cct_train.data.lists import list_names
from cct_train.data.unlabeled import UnlabeledFolder

if TYPE_CHECKING:
    from cct_train.config import Config


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
    root = str(config.data.root)
    try:
        try:
            dataset: ImageDataset = build_split_dataset(skipping_config(config), split_name)
        except TypeError as error:  # a data set that does not know missing=: build it as training does
            if "missing" not in str(error):
                raise
            dataset = build_split_dataset(config, split_name)
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


# -- the check -----------------------------------------------------------------------------------------


def _split_problems(
    config: Config, names: list[str], skipped: set[str]
) -> tuple[list[str], list[str], list[Problem]]:
    """The labeled / unlabeled names (unknown ones removed) and the problems of the split lists."""
    split = config.data.split
    problems: list[Problem] = []
    known = set(names)
    lists = [(split.labeled_list, "labeled"), (split.unlabeled_list, "unlabeled")]
    for path, role in lists:
        if path is None or not path.is_file():
            continue
        listed = list_names(path)
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


class _Collector:
    """What the check gathers across the data sets: the report and its problems, the data sets, and the
    decoding tasks of the samples that have no list-level problem (a missing file is reported once, not
    again as undecodable)."""

    def __init__(self, deep: bool) -> None:
        self.report = DataReport(deep=deep)
        self.problems = self.report.problems
        self.datasets: list[ImageDataset] = []
        self.tasks: list[DecodeTask] = []
        self.reported: set[str] = set()

    def add(
        self, dataset: ImageDataset, part: str, found: list[Problem], wanted: Iterable[tuple[str, bool, bool]]
    ) -> None:
        """A data set's problems, then a decoding task per wanted ``(name, with_mask, mask_fatal)``."""
        self.problems.extend(found)
        self.reported.update(p.path for p in found if p.kind in ("missing", "unknown-name"))
        self.problems.extend(_list_problems(dataset, part, self.reported))
        self.datasets.append(dataset)
        position = {item.name: i for i, item in enumerate(dataset.items)}
        bad = {p.path for p in self.problems if p.split == part}
        for name, with_mask, mask_fatal in wanted:
            item = dataset.items[position[name]]
            if str(item.image) in bad or (with_mask and str(item.mask) in bad):
                continue
            self.tasks.append(DecodeTask(part, len(self.datasets) - 1, position[name], with_mask, mask_fatal))


def _check_train(config: Config, collected: _Collector) -> list[str]:
    """The training split, divided as training divides it; returns its unlabeled names."""
    data = config.data
    problems, counts = collected.problems, collected.report.counts
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
        wanted = [(n, True, True) for n in labeled] + [(n, True, False) for n in unlabeled]
        collected.add(train, TRAIN, found + split_found, wanted)
        counts[TRAIN] = len(names)
    else:
        problems.extend(found)
        counts[TRAIN] = 0
    counts["labeled"] = len(labeled)
    counts["unlabeled"] = len(unlabeled)
    if not labeled:
        where = str(data.split.labeled_list or data.root)
        message = (
            f"no labeled sample in the {data.train_split!r} split (nothing to train the main decoder on)"
        )
        problems.append(Problem(where, "empty", message, True, None, TRAIN))
    return unlabeled


def _check_unlabeled_root(config: Config, collected: _Collector) -> int:
    """The extra unlabeled images of ``data.unlabeled_root``; returns how many there are."""
    root = config.data.unlabeled_root
    if root is None:
        return 0
    try:
        extra = UnlabeledFolder(root, resize=config.data.resize, missing="skip")
    except Exception as error:
        message = f"unlabeled images cannot be listed: {error}"
        collected.problems.append(Problem(str(root), "dataset", message, True, None, UNLABELED_ROOT))
        return 0
    found = [_problem_from_entry(e, UNLABELED_ROOT) for e in extra.skipped_entries]
    collected.add(extra, UNLABELED_ROOT, found, [(n, False, False) for n in extra.names])
    return len(extra)


def _unlabeled_problem(config: Config, unlabeled: list[str], n_root: int) -> Problem | None:
    """CCT's consistency loss needs unlabeled images: none from the split nor the root is fatal."""
    data = config.data
    needs_unlabeled = config.train.mode == "cct" and bool(config.model.perturbations)
    if not needs_unlabeled or unlabeled or n_root:
        return None
    message = (
        "CCT needs unlabeled images but there are none: set data.split.n_labeled, data.split.unlabeled_list "
        "or data.unlabeled_root (or use train.mode=supervised)"
    )
    where = str(data.unlabeled_root or data.split.unlabeled_list or data.root)
    return Problem(where, "empty", message, True, None, TRAIN)


def _check_val(config: Config, collected: _Collector) -> None:
    """The validation split, if any: all of it labeled."""
    data = config.data
    collected.report.counts[VAL] = 0
    if not data.val_split:
        return
    val, found = _build(config, data.val_split, VAL)
    if val is None:
        collected.problems.extend(found)
        return
    collected.add(val, VAL, found, [(n, True, True) for n in dict.fromkeys(val.names)])
    collected.report.counts[VAL] = len(val)
    if not len(val):
        message = f"the val split {data.val_split!r} has no sample"
        collected.problems.append(Problem(str(data.root), "empty", message, True, None, VAL))


def check_data(
    config: Config, *, deep: bool = True, workers: int | None = None, progress: bool = True
) -> DataReport:
    """Check the data of ``config`` (train split, its labeled / unlabeled parts, unlabeled_root, val split).

    Every problem is collected (none raises); see the module docstring for the kinds. ``deep`` decodes
    every image and mask with ``workers`` processes (default :func:`default_workers`; 0: in this
    process) and a progress bar when ``progress``; otherwise only the list-level checks run.
    """
    collected = _Collector(deep)
    report = collected.report
    unlabeled = _check_train(config, collected)
    n_root = _check_unlabeled_root(config, collected)
    report.counts[UNLABELED_ROOT] = n_root
    problem = _unlabeled_problem(config, unlabeled, n_root)
    if problem is not None:
        report.problems.append(problem)
    _check_val(config, collected)
    if deep:
        with strict_decoding():
            n_workers = default_workers() if workers is None else max(0, workers)
            decoded = decode_all(collected.datasets, collected.tasks, n_workers, progress)
        report.problems.extend(problem for result in decoded for problem in result.problems)
        report.checked = len(collected.tasks)
    else:
        report.checked = sum(len(d) for d in collected.datasets)
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
