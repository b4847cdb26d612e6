"""Per-class paired gains (CCT - supervised, IoU points) of the 180x240 pretrained study (`--budget
pretrained-hr`, 1600 iterations), from the results.json files kept in docs/results/: which classes CCT wins
or loses at each n. Run from the repository root: `python docs/results/camvid-pretrained-r13/per_class.py`.
Only the runs whose results.json is kept here enter (n = 20: seeds 3-4; seeds 0-2 predate per-run reports)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1]
REPORTS = [
    "camvid-pretrained-r11/hr-n20-s34",
    "camvid-pretrained-r9/hr-n50",
    "camvid-pretrained-r13/hr-n100",
]


def main() -> None:
    runs = {}
    for report in REPORTS:
        for run in json.loads((RESULTS / report / "results.json").read_text())["runs"]:
            if run["steps"] == 1600:
                runs[run["n"], run["method"], run["seed"]] = run
    classes = list(next(iter(runs.values()))["per_class_iou"])
    for n in sorted({key[0] for key in runs}):
        seeds = sorted(
            s for (m, method, s) in runs if m == n and method == "cct" and (n, "supervised", s) in runs
        )
        print(f"\nn = {n}, seeds {seeds}: supervised IoU (mean) | gain per seed | mean gain")
        for name in classes:
            sup = [100 * runs[n, "supervised", s]["per_class_iou"][name] for s in seeds]
            gains = [100 * runs[n, "cct", s]["per_class_iou"][name] for s in seeds]
            gains = [g - b for g, b in zip(gains, sup, strict=True)]
            per_seed = " ".join(f"{g:+5.1f}" for g in gains)
            print(f"  {name:11s} {statistics.mean(sup):5.1f} | {per_seed} | {statistics.mean(gains):+5.1f}")


if __name__ == "__main__":
    main()
