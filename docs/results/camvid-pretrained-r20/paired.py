"""Paired differences between any two methods of a study, per n: per seed, mean +- sample std, wins, and
each run's CPU seconds relative to plain CCT's. The study report pairs every method with the supervised
baseline; issue #39 also asks whether the auxiliary decoders add to the FixMatch-style baseline
(crossview - fixmatch) and whether cross-view CCT beats plain CCT, which this prints.

Usage: python paired.py RESULTS_JSON [A-B ...]     (default pairs: crossview-supervised crossview-fixmatch
                                                     crossview-cct fixmatch-supervised cct-supervised)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

DEFAULT_PAIRS = (
    "crossview-supervised",
    "crossview-fixmatch",
    "crossview-cct",
    "fixmatch-supervised",
    "cct-supervised",
)


def main(path: str, pairs: list[str]) -> None:
    with open(path) as file:
        runs = json.load(file)["runs"]
    miou: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
    cpu: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
    for run in runs:
        if run.get("error") is None and run.get("miou") is not None:
            miou[run["n"], run["method"]][run["seed"]] = 100 * run["miou"]
            cpu[run["n"], run["method"]][run["seed"]] = run["cpu_seconds"]
    for n in sorted({n for n, _ in miou}):
        print(f"n = {n}")
        for pair in pairs:
            a, b = pair.split("-")
            seeds = sorted(set(miou[n, a]) & set(miou[n, b]))
            if not seeds:
                continue
            diffs = [miou[n, a][s] - miou[n, b][s] for s in seeds]
            std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            wins = sum(d > 0 for d in diffs)
            per_seed = ", ".join(f"s{s} {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
            print(
                f"  {a} - {b}: {statistics.mean(diffs):+.2f} +- {std:.2f} ({wins}/{len(seeds)}); {per_seed}"
            )
        for method in sorted({m for m_n, m in miou if m_n == n}):
            seeds = sorted(set(cpu[n, method]) & set(cpu[n, "cct"]))
            if seeds and method != "cct":
                ratio = statistics.mean(cpu[n, method][s] / cpu[n, "cct"][s] for s in seeds)
                print(f"  CPU s {method} / cct: {ratio:.2f}x (mean over seeds {seeds})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or list(DEFAULT_PAIRS))
