"""F-Noise on the CPU: feature_noise against its former float32 draw and against Dropout2d.

    python packages/cct-perturb/benchmarks/bench_noise.py [--threads 1] [--calls 60] [--shape 8 256 41 41]

Issue 40 measured feature_noise at 13x Dropout2d on z (8, 256, 41, 41) (UniMatch's c1). The time is the
random numbers: the CPU draws them in a serial loop, one iteration per element, and F-Noise needs one per
element where Dropout2d needs one per channel. Rows (interleaved, best and median of --calls calls each):
``feature_noise`` as shipped (16-bit lanes of full-range int64 draws), the float32 ``uniform_`` draw that
cct-perturb 0.3 used, and ``F.dropout2d``; each in float32 and, for the first two, with a bf16 z.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cct_perturb import feature_noise


def uniform_draw(z: torch.Tensor, r: float, generator: torch.Generator) -> torch.Tensor:
    """cct-perturb 0.3's F-Noise: one float32 uniform per element."""
    zf = z.float()
    noise = torch.empty(z.shape, dtype=torch.float32).uniform_(-r, r, generator=generator)
    return torch.addcmul(zf, zf, noise).to(z.dtype)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 256, 41, 41])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(*args.shape, generator=gen).relu()
    zb = z.to(torch.bfloat16)
    cases: dict[str, Callable[[], torch.Tensor]] = {
        "feature_noise": lambda: feature_noise(z, generator=gen),
        "float32 uniform_ draw (0.3)": lambda: uniform_draw(z, 0.3, gen),
        "F.dropout2d": lambda: F.dropout2d(z, 0.5, training=True),
        "feature_noise, bf16 z": lambda: feature_noise(zb, generator=gen),
        "float32 uniform_ draw (0.3), bf16 z": lambda: uniform_draw(zb, 0.3, gen),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.calls):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print(f"z {tuple(z.shape)}, {args.threads} thread(s), torch {torch.__version__}, {_cpu_name()}")
    print("| case | best ms | median ms |\n|---|---:|---:|")
    for name, values in times.items():
        values.sort()
        print(f"| {name} | {values[0] * 1e3:.2f} | {values[len(values) // 2] * 1e3:.2f} |")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
