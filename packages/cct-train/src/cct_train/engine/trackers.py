"""A CSV tracker for Accelerate (TensorBoard comes with Accelerate itself).

Accelerate ships trackers for TensorBoard, W&B, MLflow and others, but none that writes a plain CSV, which is
the format people grep, paste into a sheet and diff between runs; so this small one plugs into
`Accelerator(log_with=[...])` through accelerate's GeneralTracker interface.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker


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
        (self.directory / "hparams.json").write_text(json.dumps(values, indent=2, default=str))

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
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            csv.writer(handle).writerows(header + kept)
        tmp.replace(self.path)
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
