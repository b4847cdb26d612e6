"""Trackers: a CSV tracker for Accelerate, the check that the other trackers' packages are installed, and
images to every tracker that takes them.

Accelerate ships trackers for TensorBoard, W&B, MLflow and others, but none that writes a plain CSV, which is
the format people grep, paste into a sheet and diff between runs; so this small one plugs into
`Accelerator(log_with=[...])` through accelerate's GeneralTracker interface. Accelerate's own trackers are
used as they are; a missing package fails before training with the pip line (Accelerate would skip the
tracker, or fail minutes later).
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.tracking import GeneralTracker

from cct_train.common.atomic import atomic_write_text

#: Accelerate's trackers: name (``train.trackers``) -> the pip package that provides it.
ACCELERATE_TRACKERS: dict[str, str] = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet-ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}


def tracker_available(name: str) -> bool:
    """Whether the package of Accelerate's tracker ``name`` is installed (accelerate's own test)."""
    from accelerate import utils

    check = getattr(utils, f"is_{name}_available", None)
    return bool(check()) if check is not None else False


def check_trackers(names: Iterable[str]) -> None:
    """Raise a ValueError with the pip line for every tracker in ``names`` whose package is missing."""
    missing = [n for n in names if n in ACCELERATE_TRACKERS and not tracker_available(n)]
    if missing:
        packages = " ".join(ACCELERATE_TRACKERS[n] for n in missing)
        kept = [n for n in names if n not in missing] or ["csv"]
        raise ValueError(
            f"train.trackers asks for {', '.join(missing)}, not installed: pip install {packages} "
            f"(or leave {'it' if len(missing) == 1 else 'them'} out: --set 'train.trackers=[{', '.join(kept)}]')"
        )


def log_images(trackers: Iterable[Any], images: Mapping[str, np.ndarray], step: int) -> list[str]:
    """Log RGB images (H, W, 3) uint8 to every tracker that takes images, in the form each one expects.

    Returns the names of the trackers that took them. A tracker that fails warns once and training goes on:
    a picture is not worth a run.
    """
    took = []
    for tracker in trackers:
        name = getattr(tracker, "name", "")
        if not callable(getattr(tracker, "log_images", None)):
            continue
        try:
            if name == "tensorboard":
                tracker.log_images({k: v[None] for k, v in images.items()}, step=step, dataformats="NHWC")
            elif name in ("aim", "clearml"):  # one image per key
                tracker.log_images(dict(images), step=step)
            else:  # csv, wandb, swanlab and most others: a list of images per key
                tracker.log_images({k: [v] for k, v in images.items()}, step=step)
            took.append(name)
        except Exception as error:  # a tracker's own failure must not end the run
            warnings.warn(f"tracker {name} could not log images: {error}", RuntimeWarning, stacklevel=2)
    return took


class CSVTracker(GeneralTracker):
    """Appends one row per `log` call to `<logging_dir>/metrics.csv` (long format: step, key, value)."""

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path) -> None:
        super().__init__()
        self.run_name = run_name
        self.directory = Path(logging_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.csv"

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        atomic_write_text(self.directory / "hparams.json", json.dumps(values, indent=2, default=str))

    def drop_after(self, step: int) -> int:
        """Remove the rows logged after ``step`` (a resumed run replays those steps and logs them again;
        a new run, ``step`` 0, starts an empty log); returns how many rows went. The file is replaced
        atomically."""
        if not self.path.is_file():
            return 0
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[:1], rows[1:]
        kept = [row for row in body if not (row and row[0].isdigit() and int(row[0]) > step)]
        if len(kept) == len(body):
            return 0
        if not kept:
            self.path.unlink()  # the next log writes the header again
            return len(body)
        text = io.StringIO()
        csv.writer(text).writerows(header + kept)
        atomic_write_text(self.path, text.getvalue(), newline="")
        return len(body) - len(kept)

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "key", "value"])
            for key, value in values.items():
                if isinstance(value, (int, float, str)):
                    writer.writerow([step, key, value])

    def log_images(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Write each image (a list of (H, W, 3) uint8 arrays per key) as PNG under ``images/``:
        ``<key>_step<step>[_<i>].png`` with ``/`` in keys turned into ``-``."""
        from PIL import Image

        folder = self.directory / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in values.items():
            items = value if isinstance(value, list | tuple) else [value]
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)
            for index, image in enumerate(items):
                suffix = f"_{index}" if len(items) > 1 else ""
                Image.fromarray(np.asarray(image, dtype=np.uint8)).save(
                    folder / f"{stem}_step{step or 0:06d}{suffix}.png"
                )
