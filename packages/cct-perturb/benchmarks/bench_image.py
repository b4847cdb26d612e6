"""Time cct_perturb's image perturbations (photometric, CutMix) against the usual ways of doing them.

    python packages/cct-perturb/benchmarks/bench_image.py [--batch 4] [--size 144x192] [--threads N]
        [--device cpu|cuda] [--repeat 30] [--clock wall|thread] [--json PATH]

The default input is what cross-view CCT sees in every training step on the CPU in this project: an
unlabeled batch of 4 at 144x192, with an 11-class target map, probabilities and a confidence mask mixed by
CutMix alike. Baselines: kornia's own augmentation modules (ColorJitter p=0.8, RandomGrayscale p=0.2,
RandomGaussianBlur p=0.5: batched, but drawing from the global RNG), torchvision's transforms applied one
image at a time as a data loader does (UniMatch's pipeline), kornia's ``adjust_hue`` against the closed-form
``shift_hue``, and a per-sample CutMix loop. Times are the best of interleaved calls, in ms per batch.
Needs the [image] extra (kornia); torchvision rows are left out when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from collections.abc import Callable

import kornia
import torch

from cct_perturb import image as im


def _once(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (clock() - start) * 1000.0


def time_interleaved(
    cases: dict[str, Callable[[], object]],
    device: torch.device,
    repeat: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Best of ``repeat`` rounds per case; each round calls every case once, so all see the same load."""
    for fn in cases.values():
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            times[name].append(_once(fn, device, clock))
    return {name: min(ts) for name, ts in times.items()}


def loop_cutmix(images: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """UniMatch's CutMix, one image at a time (obtain_cutmix_box with Python's random, then paste)."""
    n, _, h, w = images.shape
    outs = [t.clone() for t in (images, *others)]
    for b in range(n):
        if random.random() > 0.5:
            continue
        area = random.uniform(0.02, 0.4) * h * w
        ratio = math.exp(random.uniform(math.log(0.3), math.log(1 / 0.3)))
        bh, bw = min(h, round(math.sqrt(area * ratio))), min(w, round(math.sqrt(area / ratio)))
        y, x = random.randint(0, h - bh), random.randint(0, w - bw)
        j = (b + random.randint(1, n - 1)) % n
        for src, out in zip((images, *others), outs, strict=True):
            out[b, ..., y : y + bh, x : x + bw] = src[j, ..., y : y + bh, x : x + bw]
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="144x192", help="HxW")
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write the results as JSON to this path")
    parser.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall: time.perf_counter; thread: this thread's CPU time (CPU with --threads 1 only), which time "
        "spent waiting for a core on a loaded machine does not inflate",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.clock == "thread" and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--clock thread measures one CPU thread: use it with --device cpu --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    h, w = (int(v) for v in args.size.lower().split("x"))
    b, c = args.batch, args.classes
    cpu_gen = torch.Generator().manual_seed(0)
    images = torch.rand(b, 3, h, w, generator=cpu_gen).to(device)
    labels = torch.randint(0, c, (b, h, w), generator=cpu_gen).to(device)
    probs = torch.rand(b, c, h, w, generator=cpu_gen).softmax(1).to(device)
    confidence = (probs.amax(1) > 0.1).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    random.seed(0)
    torch.manual_seed(0)
    turns = torch.rand(b, generator=gen, device=device) - 0.5

    k_aug = kornia.augmentation
    kornia_pipeline = torch.nn.Sequential(
        k_aug.ColorJitter(0.5, 0.5, 0.5, 0.25, p=0.8),
        k_aug.RandomGrayscale(p=0.2),
        k_aug.RandomGaussianBlur((13, 13), (0.1, 2.0), p=0.5),
    ).to(device)

    cases: dict[str, Callable[[], object]] = {
        "photometric (defaults)": lambda: im.photometric(images, generator=gen),
        "photometric (every step on every image)": lambda: im.photometric(
            images, p_jitter=1.0, p_grayscale=1.0, p_blur=1.0, generator=gen
        ),
        "kornia.augmentation ColorJitter+Grayscale+Blur": lambda: kornia_pipeline(images),
        "shift_hue": lambda: im.shift_hue(images, turns),
        "kornia.enhance.adjust_hue": lambda: kornia.enhance.adjust_hue(images, turns * (2 * math.pi)),
        "cutmix (images, labels, probs, confidence)": lambda: im.cutmix(
            images, labels, probs, confidence, generator=gen
        ),
        "cutmix, per-sample loop": lambda: loop_cutmix(images, labels, probs, confidence),
        "photometric + cutmix": lambda: im.cutmix(
            im.photometric(images, generator=gen), labels, probs, confidence
        ),
    }
    try:
        import torchvision.transforms.v2 as tv

        tv_pipeline = tv.Compose(
            [
                tv.RandomApply([tv.ColorJitter(0.5, 0.5, 0.5, 0.25)], p=0.8),
                tv.RandomGrayscale(p=0.2),
                tv.RandomApply([tv.GaussianBlur(13, (0.1, 2.0))], p=0.5),
            ]
        )
        cases["torchvision transforms, one image at a time"] = lambda: torch.stack(
            [tv_pipeline(img) for img in images]
        )
    except ImportError:
        pass

    results = time_interleaved(cases, device, args.repeat, clock)
    print(
        f"device={device} torch={torch.__version__} kornia={kornia.__version__} threads={torch.get_num_threads()}"
    )
    print(
        f"batch {b} x 3 x {h} x {w}, {c} classes; best of {args.repeat} interleaved rounds, ms per batch "
        f"({args.clock} clock)"
    )
    width = max(len(name) for name in results)
    for name, ms in results.items():
        print(f"{name:<{width}}  {ms:8.2f}")
    if args.json:
        payload = {
            "device": str(device),
            "torch": torch.__version__,
            "kornia": kornia.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "batch": b,
            "size": [h, w],
            "classes": c,
            "clock": args.clock,
            "results_ms": results,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
