"""G-Cutout's connected regions: cct_perturb.label_regions against kornia.contrib.connected_components.

    python packages/cct-perturb/benchmarks/bench_kornia.py [--device cpu|cuda] [--threads N] [--json PATH]

Why this exists: cct-perturb was meant to build on kornia where kornia does a job as well or faster. The
only kornia function that fits G-Cutout is ``kornia.contrib.connected_components`` (8-connected labelling
of a BINARY image by repeated 3x3 max-pooling of pixel ids). This script times both on the object maps
G-Cutout labels (the class maps of ``bench_perturb.make_inputs`` at z's 40x40, batch 8, and a 96x96 pair) and checks
that each gives the exact regions (a Python BFS is the reference). kornia needs (a) one binary plane per
class for G-Cutout's per-class regions (``per_class=True``, the default), and (b) as many iterations as the
longest path inside a region (a winding region needs up to h*w/2; its default, 100, is enough here only
when regions are compact), while ``label_regions`` runs a fixed ``bit_length(max(h, w) - 1) + 4`` steps.
Needs kornia installed (it is not a dependency of cct-perturb).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import deque
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cct_perturb import label_regions


def class_maps(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs of 21 classes, ~1/3 background, as the G-Cutout benchmark: (B, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 21, 8, 8, generator=gen)
    coarse[:, 0] += 1.2
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).argmax(1)


def bfs_partition(keys: torch.Tensor) -> int:
    """Number of 8-connected regions of equal non-negative keys (reference, pure Python)."""
    total = 0
    for plane in keys.tolist():
        h, w = len(plane), len(plane[0])
        seen = [[False] * w for _ in range(h)]
        for y in range(h):
            for x in range(w):
                if plane[y][x] < 0 or seen[y][x]:
                    continue
                total += 1
                seen[y][x] = True
                queue = deque([(y, x)])
                while queue:
                    cy, cx = queue.popleft()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if (
                                0 <= ny < h
                                and 0 <= nx < w
                                and not seen[ny][nx]
                                and plane[ny][nx] == plane[cy][cx]
                            ):
                                seen[ny][nx] = True
                                queue.append((ny, nx))
    return total


def n_regions(labels: torch.Tensor) -> int:
    return int(torch.unique(labels[labels >= 0]).numel())


def kornia_labels(keys: torch.Tensor, num_classes: int, per_class: bool, iterations: int) -> torch.Tensor:
    """kornia labelling of G-Cutout's regions: one binary plane per class when per_class."""
    from kornia.contrib import connected_components

    batch, h, w = keys.shape
    if not per_class:
        mask = (keys >= 0).float()[:, None]
        lab = connected_components(mask, num_iterations=iterations)[:, 0]
        return torch.where(keys >= 0, lab, torch.full_like(lab, -1))
    planes = (keys[:, None] == torch.arange(num_classes, device=keys.device).view(1, -1, 1, 1)).float()
    lab = connected_components(planes.reshape(-1, 1, h, w), num_iterations=iterations).view(
        batch, num_classes, h, w
    )
    lab = lab.amax(1)  # exactly one plane is non-zero per object pixel
    return torch.where(keys >= 0, lab, torch.full_like(lab, -1))


def best_ms(fn: Callable[[], torch.Tensor], device: torch.device, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for batch, size in [(8, 40), (2, 96)]:
        classes = class_maps(batch, size)
        for per_class in (True, False):
            keys = classes if per_class else torch.zeros_like(classes)
            keys = torch.where(classes > 0, keys, torch.full_like(keys, -1)).to(device)
            ref = bfs_partition(keys.cpu())
            ours = label_regions(keys)
            row = {
                "map": f"{batch}x{size}x{size}",
                "per_class": per_class,
                "regions": ref,
                "label_regions_ms": best_ms(lambda k=keys: label_regions(k), device, args.repeat),
                "label_regions_exact": n_regions(ours) == ref,
            }
            for iters in (100, size):
                lab = kornia_labels(keys, 21, per_class, iters)
                row[f"kornia_{iters}_ms"] = best_ms(
                    lambda k=keys, p=per_class, i=iters: kornia_labels(k, 21, p, i), device, args.repeat
                )
                row[f"kornia_{iters}_exact"] = n_regions(lab) == ref
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    meta["processor"] = platform.processor() or platform.machine()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
