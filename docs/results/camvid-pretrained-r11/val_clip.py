"""Where CamVid's val frames come from, and how close each seed's labeled split comes to them (round 11).

    python docs/results/camvid-pretrained-r11/val_clip.py --data-root /work/shared/data/camvid

CamVid names a frame `<drive>_<frame number>` (the video runs at 30 frames per second). Prints the drives
and time spans of train and val, and for each study seed and n the labeled frames per drive and the
labeled frames of val's drive closest in time to the val clip, beside the supervised baseline's val mIoU
at 180x240 (rounds 9 and 11, docs/results.md). Splits are drawn as the study draws them
(`cct_train.data.make_split` over the train names, seed s).
"""

from __future__ import annotations

import argparse
import collections
import itertools
from pathlib import Path

from cct_train.data import make_split

FPS = 30
# Supervised baseline, val mIoU (%) at 180x240, 1600 iterations (`--budget pretrained-hr`), by (n, seed):
# rounds 9 (seeds 0-2, Intel Xeon, bf16) and 11 (seeds 3-4, AMD EPYC, float32), docs/results.md.
BASELINE = {(20, 0): 33.47, (20, 1): 34.90, (20, 2): 32.75, (50, 0): 37.15, (50, 1): 45.03, (50, 2): 39.61}


def names(root: Path, split: str) -> list[str]:
    """The `<drive>_<frame>` names listed in `<root>/<split>.txt` (first column, file stem)."""
    lines = (root / f"{split}.txt").read_text().split("\n")
    return [Path(line.split()[0]).stem for line in lines if line.strip()]


def frames(pool: list[str]) -> dict[str, list[int]]:
    by_drive: dict[str, list[int]] = collections.defaultdict(list)
    for name in pool:
        drive, number = name.rsplit("_", 1)
        by_drive[drive].append(int(number.lstrip("f")))  # Seq05VD numbers its frames f00930
    return {d: sorted(v) for d, v in sorted(by_drive.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    train, val = names(args.data_root, "train"), names(args.data_root, "val")
    for label, pool in (("train", train), ("val", val)):
        for drive, f in frames(pool).items():
            step = (
                collections.Counter(b - a for a, b in itertools.pairwise(f)).most_common(1)[0][0]
                if len(f) > 1
                else 0
            )
            span = (f[-1] - f[0]) / FPS
            print(
                f"{label:5s} {drive}: {len(f):3d} frames {f[0]}..{f[-1]}, every {step} frames, {span:.1f} s"
            )
    ((drive, clip),) = frames(val).items()
    lo, hi = clip[0], clip[-1]
    same = frames(train)[drive]
    before = max(f for f in same if f < lo)
    after = min(f for f in same if f > hi)
    print(
        f"val is one clip of {drive}, {(hi - lo) / FPS:.1f} s; the train frames of {drive} nearest to it "
        f"are {before} ({(lo - before) / FPS:.1f} s before) and {after} ({(after - hi) / FPS:.1f} s after)"
    )
    print(f"\n  n seed  labeled per drive{' ' * 24}labeled {drive} frames nearest the clip (s)  baseline val")
    for n in (20, 50):
        for seed in range(args.seeds):
            split = make_split(train, n, seed)
            per_drive = {d: len(f) for d, f in frames(split.labeled).items()}
            near = sorted(min(abs(f - lo), abs(f - hi)) / FPS for f in frames(split.labeled).get(drive, []))
            base = BASELINE.get((n, seed))
            print(
                f"{n:3d} {seed:4d}  {per_drive!s:42s}  {', '.join(f'{s:.1f}' for s in near[:3]):>26s}"
                f"  {'' if base is None else f'{base:.2f}'}"
            )


if __name__ == "__main__":
    main()
