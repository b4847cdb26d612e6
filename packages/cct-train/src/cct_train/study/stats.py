"""The study's statistics: per-method means and standard deviations over seeds, paired differences to the
baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cct_train.study.runs import RunResult
from cct_train.study.schema import ALL_METHODS, SUPERVISED


# ---------------------------------------------------------------------------------------------- maths
@dataclass(frozen=True)
class Summary:
    """mIoU of one (n, method) over seeds, in %: mean, sample standard deviation, and the paired
    difference to the supervised baseline of the same (n, seed)."""

    n: int
    method: str
    seeds: list[int]
    values: list[float]
    mean: float
    std: float
    delta_mean: float | None = None
    delta_std: float | None = None
    wins: int | None = None
    pixel_accuracy_mean: float = math.nan
    per_class_mean: dict[str, float | None] = field(default_factory=dict)
    seconds_mean: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    if not values:
        return math.nan, math.nan
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def aggregate(results: Iterable[RunResult], baseline: str = SUPERVISED) -> list[Summary]:
    """Per (n, method): mean ± std of mIoU (%) over the seeds that finished, and the paired difference to
    ``baseline`` over the seeds both finished (``wins``: seeds where the method scored higher)."""
    ok = [r for r in results if r.error is None and not math.isnan(r.miou)]
    by_cell: dict[tuple[int, str], list[RunResult]] = {}
    for r in ok:
        by_cell.setdefault((r.n, r.method), []).append(r)
    base = {(r.n, r.seed): 100 * r.miou for r in ok if r.method == baseline}
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    summaries = []
    for (n, method), cell in sorted(by_cell.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        cell = sorted(cell, key=lambda r: r.seed)
        values = [100 * r.miou for r in cell]
        mean, std = mean_std(values)
        delta_mean = delta_std = None
        wins = None
        if method != baseline:
            diffs = [100 * r.miou - base[(n, r.seed)] for r in cell if (n, r.seed) in base]
            if diffs:
                delta_mean, delta_std = mean_std(diffs)
                wins = sum(d > 0 for d in diffs)
        classes = cell[0].per_class_iou.keys()
        per_class: dict[str, float | None] = {}
        for name in classes:
            known = [100 * v for r in cell if (v := r.per_class_iou.get(name)) is not None]
            per_class[name] = mean_std(known)[0] if known else None
        summaries.append(
            Summary(
                n=n,
                method=method,
                seeds=[r.seed for r in cell],
                values=values,
                mean=mean,
                std=std,
                delta_mean=delta_mean,
                delta_std=delta_std,
                wins=wins,
                pixel_accuracy_mean=mean_std([100 * r.pixel_accuracy for r in cell])[0],
                per_class_mean=per_class,
                seconds_mean=mean_std([r.seconds for r in cell])[0],
            )
        )
    return summaries
