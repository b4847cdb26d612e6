"""Time the batched cct_perturb perturbations against straightforward per-sample loops.

    python packages/cct-perturb/benchmarks/bench_perturb.py [--json PATH] [--device cpu|cuda] [--threads N]

Inputs as in CCT on VOC: features z [8, 512, 40, 40] and main-decoder logits [8, 21, 320, 320] (smooth
random blobs, ~30% background). Runs on CUDA when available, else on the CPU. The per-sample baselines
live here only; the G-Cutout and mask baselines follow the original implementation: one image at a time,
argmax at the prediction's resolution, then (G-Cutout) one class at a time, connected regions (a plain
Python BFS: neither cv2 nor scipy is a dependency here), one rectangle per region drawn with Python's
`random`, and the mask resized to the features.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import deque
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import cct_perturb as cp

BACKGROUND = (0,)
ERASE = 0.4
MIN_REGION = 8


# ---------------------------------------------------------------- per-sample baselines
def loop_feature_noise(z: torch.Tensor) -> torch.Tensor:
    out = []
    for zi in z:
        noise = torch.empty_like(zi).uniform_(-0.3, 0.3)
        out.append(zi + zi * noise)
    return torch.stack(out)


def loop_feature_drop(z: torch.Tensor) -> torch.Tensor:
    out = []
    for zi in z:
        att = zi.mean(0)
        att = (att - att.min()) / (att.max() - att.min()).clamp_min(1e-12)
        gamma = random.uniform(0.6, 0.9)
        out.append(zi * (att < gamma))
    return torch.stack(out)


def loop_dropout(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.dropout2d(zi[None], 0.5, training=True) for zi in z])


def _loop_objects(pred_i: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    labels = pred_i.argmax(0)
    obj = torch.ones_like(labels, dtype=torch.bool)
    for c in BACKGROUND:
        obj &= labels != c
    return F.interpolate(obj[None, None].float(), size=size, mode="nearest")[0]


def loop_object_mask(z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return torch.stack([zi * (1 - _loop_objects(pi, zi.shape[-2:])) for zi, pi in zip(z, pred, strict=True)])


def loop_context_mask(z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return torch.stack([zi * _loop_objects(pi, zi.shape[-2:]) for zi, pi in zip(z, pred, strict=True)])


def _bfs_regions(mask: list[list[bool]]) -> list[list[tuple[int, int]]]:
    h, w = len(mask), len(mask[0])
    seen = [[False] * w for _ in range(h)]
    regions = []
    for y in range(h):
        for x in range(w):
            if not mask[y][x] or seen[y][x]:
                continue
            seen[y][x] = True
            queue, pixels = deque([(y, x)]), []
            while queue:
                cy, cx = queue.popleft()
                pixels.append((cy, cx))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny][nx] and not seen[ny][nx]:
                            seen[ny][nx] = True
                            queue.append((ny, nx))
            regions.append(pixels)
    return regions


def loop_guided_cutout(z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    out = []
    h, w = z.shape[-2:]
    for zi, pi in zip(z, pred, strict=True):
        labels = F.interpolate(pi.argmax(0)[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        keep = torch.ones(h, w, dtype=zi.dtype, device=zi.device)
        grid = labels.cpu().tolist()
        for c in labels.unique().tolist():
            if c in BACKGROUND:
                continue
            mask = [[v == c for v in row] for row in grid]
            for pixels in _bfs_regions(mask):
                if len(pixels) < MIN_REGION:
                    continue
                ys = [p[0] for p in pixels]
                xs = [p[1] for p in pixels]
                bh, bw = max(ys) - min(ys) + 1, max(xs) - min(xs) + 1
                rh, rw = int(ERASE * bh + 0.5), int(ERASE * bw + 0.5)
                y0 = min(ys) + random.randint(0, bh - rh)
                x0 = min(xs) + random.randint(0, bw - rw)
                keep[y0 : y0 + rh, x0 : x0 + rw] = 0
        out.append(zi * keep)
    return torch.stack(out)


def loop_vat(z: torch.Tensor, decoder: nn.Module, target: torch.Tensor) -> torch.Tensor:
    out = []
    for zi, ti in zip(z, target, strict=True):
        d = torch.rand_like(zi[None]) - 0.5
        d = (d / d.norm()).requires_grad_(True)
        logits = decoder(zi[None].detach() + 1e-6 * d)
        kl = F.kl_div(F.log_softmax(logits, 1), F.softmax(ti[None], 1), reduction="sum")
        (grad,) = torch.autograd.grad(kl, [d])
        grad = grad / grad.abs().max().clamp_min(1e-30)
        out.append(zi + 2.0 * (grad / grad.norm().clamp_min(1e-30))[0])
    return torch.stack(out)


# ---------------------------------------------------------------- inputs
class SubPixelDecoder(nn.Module):
    """A CCT-style decoder: 1x1 conv D -> C, then three x2 PixelShuffle blocks (C -> 4C, ReLU, shuffle)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, num_classes, 1)
        self.up = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(num_classes, 4 * num_classes, 1), nn.ReLU(), nn.PixelShuffle(2))
                for _ in range(3)
            ]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.head(z))


def make_inputs(device: torch.device, batch: int) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, 512, 40, 40, generator=gen).relu()
    coarse = torch.randn(batch, 21, 8, 8, generator=gen)
    coarse[:, 0] += 1.2  # background wins about a third of the pixels
    pred = F.interpolate(coarse, size=(320, 320), mode="bilinear", align_corners=False)
    torch.manual_seed(0)
    return z.to(device), pred.to(device), SubPixelDecoder(512, 21).to(device)


def _once(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


def timeit(fn: Callable[[], torch.Tensor], device: torch.device, repeat: int, warmup: int = 2) -> float:
    """Best of ``repeat`` calls in ms (the minimum is the estimate least disturbed by other processes)."""
    for _ in range(warmup):
        fn()
    return min(_once(fn, device) for _ in range(repeat))


def timeit_pair(
    a: Callable[[], torch.Tensor], b: Callable[[], torch.Tensor], device: torch.device, repeat: int
) -> tuple[float, float]:
    """Best-of-``repeat`` times of ``a`` and ``b``, interleaved so that both see the same machine load."""
    for _ in range(2):
        a()
        b()
    times_a, times_b = [], []
    for _ in range(repeat):
        times_a.append(_once(a, device))
        times_b.append(_once(b, device))
    return min(times_a), min(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", default=None, help="write the results as JSON to this path")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    z, pred, decoder = make_inputs(device, args.batch)
    random.seed(0)
    torch.manual_seed(0)

    cases: list[tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor], int]] = [
        ("feature_noise", lambda: cp.feature_noise(z), lambda: loop_feature_noise(z), args.repeat),
        ("feature_drop", lambda: cp.feature_drop(z), lambda: loop_feature_drop(z), args.repeat),
        ("dropout", lambda: cp.spatial_dropout(z), lambda: loop_dropout(z), args.repeat),
        ("object_mask", lambda: cp.object_mask(z, pred), lambda: loop_object_mask(z, pred), args.repeat),
        ("context_mask", lambda: cp.context_mask(z, pred), lambda: loop_context_mask(z, pred), args.repeat),
        (
            "guided_cutout",
            lambda: cp.guided_cutout(z, pred, ERASE, BACKGROUND, MIN_REGION),
            lambda: loop_guided_cutout(z, pred),
            args.repeat,
        ),
        (
            "vat",
            lambda: cp.vat(z, decoder, pred),
            lambda: loop_vat(z, decoder, pred),
            max(3, args.repeat // 3),
        ),
    ]
    rows = []
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"z={tuple(z.shape)} pred={tuple(pred.shape)}")
    print("best of several interleaved calls, ms per call")
    print(f"{'perturbation':<15}{'batched ms':>12}{'loop ms':>12}{'speed-up':>10}")
    for name, batched, loop, repeat in cases:
        t_batched, t_loop = timeit_pair(batched, loop, device, repeat)
        rows.append({"name": name, "batched_ms": t_batched, "loop_ms": t_loop, "speedup": t_loop / t_batched})
        print(f"{name:<15}{t_batched:>12.2f}{t_loop:>12.2f}{t_loop / t_batched:>9.1f}x")
    # G-Cutout in more detail: the batched function called once per sample isolates the batching gain.
    per_sample = timeit(
        lambda: torch.cat([cp.guided_cutout(z[i : i + 1], pred[i : i + 1]) for i in range(z.shape[0])]),
        device,
        args.repeat,
    )
    print(f"guided_cutout, the batched function called once per sample: {per_sample:.2f} ms")
    # The masks resize the prediction before the argmax (exact for nearest); the original's order, batched:
    full_res = timeit(
        lambda: torch.where(
            F.interpolate((pred.argmax(1, keepdim=True) != 0).float(), size=z.shape[-2:], mode="nearest") > 0,
            z.new_zeros(()),
            z,
        ),
        device,
        args.repeat,
    )
    print(f"object_mask, batched but argmax at full resolution then resize: {full_res:.2f} ms")
    if args.json:
        payload = {
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "z_shape": list(z.shape),
            "pred_shape": list(pred.shape),
            "results": rows,
            "guided_cutout_per_sample_calls_ms": per_sample,
            "object_mask_batched_argmax_full_resolution_ms": full_res,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
