"""Paired gains of CCT runs from one study folder over the supervised runs of another (issue #15, round 8).

A study re-trains every run whose configuration changed, the baseline's too, even when the change (here
``model.confidence``) only acts on Lu. This script pairs, by n and seed, the CCT runs of ``--cct`` with the
supervised runs of ``--supervised`` after checking that their configurations differ only where a CCT run
and its baseline must (the method, the decoders, the run's name and folder) and in the keys named by
``--allow``. Prints the table and writes one JSON line per pair.

    python docs/results/camvid-pretrained-r8/paired.py --supervised /work/study-r4/runs \
        --cct /work/study-r8/runs --allow model.confidence --out pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

EXPECTED = {"experiment.name", "experiment.output_dir", "model.perturbations", "train.mode"}


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "perturbations":
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    result = json.loads((run_dir / "study-result.json").read_text())
    if result.get("error"):
        raise SystemExit(f"{run_dir}: the run failed: {result['error']}")
    return result, flat(yaml.safe_load((run_dir / "config.yaml").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supervised", type=Path, required=True, help="runs folder with n*/supervised/seed*")
    parser.add_argument("--cct", type=Path, required=True, help="runs folder with n*/cct/seed*")
    parser.add_argument("--allow", nargs="*", default=[], help="config keys allowed to differ")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for cct_dir in sorted(args.cct.glob("n*/cct/seed*")):
        if not (cct_dir / "study-result.json").is_file():
            continue
        n, seed = cct_dir.parts[-3], cct_dir.parts[-1]
        sup_dir = args.supervised / n / "supervised" / seed
        cct, cct_cfg = load(cct_dir)
        sup, sup_cfg = load(sup_dir)
        differ = {k for k in cct_cfg.keys() | sup_cfg.keys() if cct_cfg.get(k) != sup_cfg.get(k)}
        unexpected = sorted(differ - EXPECTED - set(args.allow))
        if unexpected:
            raise SystemExit(f"{cct_dir} vs {sup_dir}: configurations differ in {unexpected}")
        rows.append(
            {
                "n": cct["n"],
                "seed": cct["seed"],
                "supervised": 100 * sup["miou"],
                "cct": 100 * cct["miou"],
                "gain": 100 * (cct["miou"] - sup["miou"]),
                "cct_seconds": cct["seconds"],
                "cct_cpu_seconds": cct.get("cpu_seconds"),
                "differ": {k: cct_cfg.get(k) for k in sorted(differ & set(args.allow))},
                "per_class_gain": {
                    c: round(100 * (cct["per_class_iou"][c] - sup["per_class_iou"][c]), 2)
                    for c in cct["per_class_iou"]
                },
            }
        )
    for n in sorted({r["n"] for r in rows}):
        group = [r for r in rows if r["n"] == n]
        for r in group:
            print(
                f"n={n} seed {r['seed']}: supervised {r['supervised']:.2f}  cct {r['cct']:.2f}  gain {r['gain']:+.2f}"
            )
        if len(group) > 1:
            sd = {m: statistics.stdev(r[m] for r in group) for m in ("supervised", "cct", "gain")}
            mean = {m: statistics.mean(r[m] for r in group) for m in ("supervised", "cct", "gain")}
            wins = sum(r["gain"] > 0 for r in group)
            met = mean["gain"] > max(sd["supervised"], sd["cct"])
            print(
                f"n={n}: supervised {mean['supervised']:.1f} ± {sd['supervised']:.1f}, cct {mean['cct']:.1f} ± "
                f"{sd['cct']:.1f}, gain {mean['gain']:+.1f} ± {sd['gain']:.1f} ({wins}/{len(group)}); "
                f"target {'met' if met else 'not met'}"
            )
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
