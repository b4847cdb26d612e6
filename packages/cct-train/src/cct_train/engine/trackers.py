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

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "key", "value"])
            for key, value in values.items():
                if isinstance(value, (int, float, str)):
                    writer.writerow([step, key, value])
