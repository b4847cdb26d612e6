"""Where the extra time of a CCT step goes: supervised (2B) vs CCT without its auxiliary decoders vs CCT.

The middle variant keeps everything of the CCT step (encoder on B + B images, main decoder on both, the
perturbations and VAT) but replaces the fused auxiliary loss by ``0 * sum(perturbed features)``, so the
difference to the full step is the cost of the K auxiliary decoders and their consistency loss
(docs/performance.md, "The compute floor"). Steps of the modes are interleaved; medians are printed.

    python packages/cct-train/benchmarks/step_breakdown.py --encoder timm:resnet18 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from unittest import mock

import torch

from cct_train.models.cct import CCTModel
from cct_train.tools.bench import PAPER_PERTURBATIONS


def _no_aux_loss(
    decoders: Sequence[object], perturbed: Sequence[torch.Tensor], *args: object, **kw: object
) -> torch.Tensor:
    # Keeps the perturbations in the graph (their backward runs) without any auxiliary decoder.
    return torch.stack([p.sum() for p in perturbed]).sum() * 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="timm:resnet18")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=2, help="B: CCT sees B + B, the supervised step 2B")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, s, c = args.batch, args.size, args.classes
    x, u = torch.randn(b, 3, s, s), torch.randn(b, 3, s, s)
    y, y_u = torch.randint(0, c, (b, s, s)), torch.randint(0, c, (b, s, s))
    cct = CCTModel(args.encoder, c, perturbations=dict(PAPER_PERTURBATIONS), psp_channels=512)
    sup = CCTModel(args.encoder, c, perturbations={}, psp_channels=512)
    opt_c = torch.optim.SGD(cct.parameters(), lr=1e-3, momentum=0.9)
    opt_s = torch.optim.SGD(sup.parameters(), lr=1e-3, momentum=0.9)

    def step_sup() -> None:
        sup(torch.cat([x, u]), torch.cat([y, y_u]))["loss"].backward()
        opt_s.step()
        opt_s.zero_grad(set_to_none=True)

    def step_cct() -> None:
        cct(x, y, u)["loss"].backward()
        opt_c.step()
        opt_c.zero_grad(set_to_none=True)

    def step_no_aux() -> None:
        with mock.patch("cct_train.objectives.losses.fused_consistency_loss", _no_aux_loss):
            step_cct()

    modes: dict[str, Callable[[], None]] = {
        f"supervised {2 * b}": step_sup,
        f"CCT {b}+{b} without aux decoders": step_no_aux,
        f"CCT {b}+{b}": step_cct,
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    for fn in modes.values():  # warm-up
        fn()
    for _ in range(args.steps):
        for name, fn in modes.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    floor = statistics.median(times[f"supervised {2 * b}"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:36s} {med:7.3f} s/step  {med / floor:5.2f}x  (min {min(ts):.3f})")


if __name__ == "__main__":
    main()
