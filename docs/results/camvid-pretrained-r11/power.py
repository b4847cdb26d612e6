"""How often issue #15's criterion holds for a given true gain, with the spread measured at 180x240 (round 11).

    python docs/results/camvid-pretrained-r11/power.py

The criterion: over k seeds, the mean paired gain (CCT - supervised, same split) exceeds the larger of the
two methods' sample standard deviations over seeds. Model of one run's val mIoU, seed s, method m:

    y[s, m] = mu_m + a_s + e[s, m],   a_s ~ N(0, sigma_split),  e ~ N(0, sigma_run)

a_s is what the seed's labeled split does to val (shared by both methods of a seed), e the run's own noise.
From the 180x240 runs of rounds 9 and 11 (docs/results.md), pooled over the cells measured there:
the paired differences' variance is 2 sigma_run^2 (plus any spread of the true gain itself, so sigma_run is
an upper bound), a method's variance over seeds is sigma_split^2 + sigma_run^2.

    python docs/results/camvid-pretrained-r11/power.py --loss abce

does the same for the ab-CE runs of rounds 15-16 (seeds 0-4), with the variance estimated for each n apart
(with ab-CE the split's effect on val is twice as large at n = 50 as at n = 20), and prints each n's
chance of the criterion at its measured gain.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

# (n, method): val mIoU (%) per seed at 180x240, 1600 iterations: round 9 (seeds 0-2).
RUNS = {
    (20, "supervised"): [33.47, 34.90, 32.75],
    (20, "cct"): [34.87, 37.71, 33.21],
    (50, "supervised"): [37.15, 45.03, 39.61],
    (50, "cct"): [37.97, 42.32, 38.82],
}
# The same with ab-CE as Ls for both methods (rounds 15 and 16: seeds 0-2 and 3-4, AMD EPYC Zen 5, bf16).
RUNS_ABCE = {
    (20, "supervised"): [34.16, 36.62, 33.94, 33.30, 39.75],
    (20, "cct"): [35.97, 37.66, 34.39, 35.24, 42.44],
    (50, "supervised"): [38.92, 45.53, 40.73, 44.45, 45.37],
    (50, "cct"): [39.96, 46.99, 40.60, 45.36, 45.72],
}
GAINS = [0.0, 1.0, 1.6, 2.0, 3.0, 4.0, 5.0, 6.0]


def pooled_var(groups: list[list[float]]) -> float:
    num = sum(float(np.var(g, ddof=1)) * (len(g) - 1) for g in groups)
    return num / sum(len(g) - 1 for g in groups)


def criterion_rate(gain: float, seeds: int, sigma_split: float, sigma_run: float, draws: int, rng) -> float:
    split = rng.normal(0.0, sigma_split, (draws, seeds, 1))
    runs = rng.normal(0.0, sigma_run, (draws, seeds, 2))
    y = split + runs
    y[..., 1] += gain
    diff = (y[..., 1] - y[..., 0]).mean(axis=1)
    spread = y.std(axis=1, ddof=1).max(axis=1)
    return float((diff > spread).mean())


def paired_diffs(runs: dict[tuple[int, str], list[float]], ns: tuple[int, ...]) -> list[list[float]]:
    return [list(np.subtract(runs[(n, "cct")], runs[(n, "supervised")])) for n in ns]


def components(runs: dict[tuple[int, str], list[float]], ns: tuple[int, ...]) -> tuple[float, float]:
    """(sigma_split, sigma_run) pooled over the cells of the labeled counts ``ns``, and print them."""
    method_var = pooled_var([v for (n, _), v in runs.items() if n in ns])
    diff_var = pooled_var(paired_diffs(runs, ns))
    sigma_run = math.sqrt(diff_var / 2)
    sigma_split = math.sqrt(max(method_var - sigma_run**2, 0.0))
    print(
        f"pooled std of a method over seeds {math.sqrt(method_var):.2f}; of the paired difference "
        f"{math.sqrt(diff_var):.2f} -> sigma_run <= {sigma_run:.2f}, sigma_split ~ {sigma_split:.2f}"
    )
    return sigma_split, sigma_run


def abce() -> None:
    rng = np.random.default_rng(0)
    for n in (20, 50):
        print(f"\nn = {n}, ab-CE, seeds 0-4: ", end="")
        sigma_split, sigma_run = components(RUNS_ABCE, (n,))
        (diffs,) = paired_diffs(RUNS_ABCE, (n,))
        gain = float(np.mean(diffs))
        spread = max(float(np.std(RUNS_ABCE[(n, m)], ddof=1)) for m in ("supervised", "cct"))
        print(f"measured: mean gain {gain:+.2f}, larger std over the 5 seeds {spread:.2f}")
        print("P(criterion holds) for a true gain of (points):")
        print("seeds  " + "  ".join(f"{g:5.1f}" for g in [*GAINS, gain]) + "  (the last: the measured gain)")
        for seeds in (3, 5):
            rates = [criterion_rate(g, seeds, sigma_split, sigma_run, 200_000, rng) for g in [*GAINS, gain]]
            print(f"{seeds:5d}  " + "  ".join(f"{r:5.2f}" for r in rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", choices=["ce", "abce"], default="ce")
    if parser.parse_args().loss == "abce":
        abce()
        return
    sigma_split, sigma_run = components(RUNS, (20, 50))
    rng = np.random.default_rng(0)
    gains = GAINS
    print("\nP(criterion holds) for a true gain of (points):")
    print("seeds  " + "  ".join(f"{g:5.1f}" for g in gains))
    for seeds in (3, 5, 10):
        rates = [criterion_rate(g, seeds, sigma_split, sigma_run, 200_000, rng) for g in gains]
        print(f"{seeds:5d}  " + "  ".join(f"{r:5.2f}" for r in rates))
    print(
        "\nthe same with the split effect halved (a val set whose score depended half as much on the split):"
    )
    for seeds in (3, 5):
        rates = [criterion_rate(g, seeds, sigma_split / 2, sigma_run, 200_000, rng) for g in gains]
        print(f"{seeds:5d}  " + "  ".join(f"{r:5.2f}" for r in rates))


if __name__ == "__main__":
    main()
