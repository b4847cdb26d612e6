"""The study's statistics: per-method means and standard deviations over seeds, paired differences to the
baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cct_train.study.runs import RunResult
from cct_train.study.schema import SUPERVISED, known_methods


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
    #: 95 % interval of ``delta_mean`` (Student's t over the paired seeds); None with fewer than 2 pairs.
    delta_ci95: list[float] | None = None
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


# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (scipy.stats.t.ppf(0.975, df)).
# A table rather than a scipy dependency: cct-train needs nothing else from scipy.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (table to 30, then the
    Cornish-Fisher expansion about the normal quantile, within 1e-3 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval95(values: Sequence[float]) -> list[float] | None:
    """95 % confidence interval ``[low, high]`` of the mean of ``values`` (Student's t; the values are
    taken as independent draws, as paired gains of different seeds are). None for fewer than 2 values.

    With 3 seeds the half-width is 2.48 standard deviations: a study of few seeds says little, and the
    interval makes that visible next to ``mean ± std``.
    """
    if len(values) < 2:
        return None
    mean, std = mean_std(values)
    half = t_quantile_975(len(values) - 1) * std / math.sqrt(len(values))
    return [mean - half, mean + half]


def aggregate(results: Iterable[RunResult], baseline: str = SUPERVISED) -> list[Summary]:
    """Per (n, method): mean ± std of mIoU (%) over the seeds that finished, and the paired difference to
    ``baseline`` over the seeds both finished (``wins``: seeds where the method scored higher)."""
    ok = [r for r in results if r.error is None and not math.isnan(r.miou)]
    by_cell: dict[tuple[int, str], list[RunResult]] = {}
    for r in ok:
        by_cell.setdefault((r.n, r.method), []).append(r)
    base = {(r.n, r.seed): 100 * r.miou for r in ok if r.method == baseline}
    order = {m: i for i, m in enumerate(known_methods())}
    summaries = []
    for (n, method), cell in sorted(by_cell.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        cell = sorted(cell, key=lambda r: r.seed)
        values = [100 * r.miou for r in cell]
        mean, std = mean_std(values)
        delta_mean = delta_std = None
        wins = None
        delta_ci95 = None
        if method != baseline:
            diffs = [100 * r.miou - base[(n, r.seed)] for r in cell if (n, r.seed) in base]
            if diffs:
                delta_mean, delta_std = mean_std(diffs)
                wins = sum(d > 0 for d in diffs)
                delta_ci95 = mean_interval95(diffs)
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
                delta_ci95=delta_ci95,
                pixel_accuracy_mean=mean_std([100 * r.pixel_accuracy for r in cell])[0],
                per_class_mean=per_class,
                seconds_mean=mean_std([r.seconds for r in cell])[0],
            )
        )
    return summaries
