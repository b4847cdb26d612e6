"""How hard Lu pulls on the encoder next to Ls (issue #15, round 9).

For the pretrained study's CCT run (n, seed), on a few training batches, the gradient of the supervised loss
Ls and of the weighted consistency term w_u * Lu on each part of the model (backbone, PSP, auxiliary
decoders): their norms, the ratio, and the cosine between the two on the encoder. Either at the start of
training (ImageNet backbone, fresh head) or from a finished run's weights (``--weights``: a supervised run's
model.safetensors loads everything but the auxiliary decoders, which stay fresh, as CCT's start from scratch;
a CCT run's loads all).

w_u * Lu's gradient is the difference between the gradient of Ls + Lu and that of Ls + 0 * Lu, two forwards of
the same batches with the same draws (the perturbations' generator restored), times w_u. Prints one JSON line.

    python grad_balance.py --n 20 --seed 0 --weight 30 [--weights RUN/model.safetensors] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer
from cct_train.study.driver import _with_study_data
from cct_train.study.runs import run_config
from cct_train.study.schema import base_config, load_study_config

torch.set_num_threads(1)

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=20)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--weight", type=float, default=30.0, help="w_u, the weight of Lu")
parser.add_argument("--weights", type=Path, default=None)
parser.add_argument("--batches", type=int, default=8)
parser.add_argument("--runs", type=Path, default=Path("/work/study-r9/runs"))
parser.add_argument("--data-root", default="/work/shared/data/camvid")
parser.add_argument("--set", action="append", default=[])
args = parser.parse_args()

root = Path(__file__).resolve().parents[3]
study = load_study_config(
    root / "configs/study/camvid-pretrained.yaml", [f"base.data.root={args.data_root}", *args.set]
)
base = _with_study_data(study, base_config(study), args.runs)
out_dir = Path(f"/tmp/grad-balance-n{args.n}-s{args.seed}")
config = config_from_dict(run_config(study, base, args.n, "cct", args.seed, out_dir), "grad_balance")
trainer = Trainer(config, quiet=True)
model = trainer.unwrapped
if args.weights is not None:
    missing, unexpected = model.load_state_dict(load_file(args.weights), strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("aux_decoders.") for k in missing), missing
model.train()

parts = {
    "backbone": [p for p in model.encoder.parameters() if p.requires_grad],
    "psp": [p for p in model.psp.parameters() if p.requires_grad],
    "aux": [p for p in model.aux_decoders.parameters() if p.requires_grad],
}
params = [p for ps in parts.values() for p in ps]
run = trainer.domains[0]


def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=False)
    return [
        torch.zeros_like(p) if g is None else g.detach().float() for g, p in zip(grads, params, strict=True)
    ]


sums: dict[str, float] = {}
for _ in range(args.batches):
    labeled = next(run.labeled_stream)
    unlabeled = next(run.unlabeled_stream)
    inputs = trainer._inputs(run, labeled, unlabeled)
    images, targets = inputs.pop("images"), inputs.pop("targets")
    state = trainer.generator.get_state()
    per_weight = []
    for weight in (0.0, 1.0):  # Ls + 0 * Lu, then Ls + Lu, from the same draws
        trainer.generator.set_state(state)
        inputs["consistency_weight"] = weight
        out = trainer.model(images, targets, generator=trainer.generator, **inputs)
        per_weight.append(gradients(out["loss"]))
    g_sup, g_total = per_weight
    g_unsup = [(t - s) * args.weight for t, s in zip(g_total, g_sup, strict=True)]
    offset = 0
    for name, ps in parts.items():
        s = g_sup[offset : offset + len(ps)]
        u = g_unsup[offset : offset + len(ps)]
        offset += len(ps)
        ns = math.sqrt(sum(float(x.pow(2).sum()) for x in s))
        nu = math.sqrt(sum(float(x.pow(2).sum()) for x in u))
        dot = sum(float((a * b).sum()) for a, b in zip(s, u, strict=True))
        sums[f"{name}/sup_norm"] = sums.get(f"{name}/sup_norm", 0.0) + ns
        sums[f"{name}/unsup_norm"] = sums.get(f"{name}/unsup_norm", 0.0) + nu
        if ns > 0 and nu > 0:
            sums[f"{name}/cosine"] = sums.get(f"{name}/cosine", 0.0) + dot / (ns * nu)
    sums["loss_sup"] = sums.get("loss_sup", 0.0) + float(out["loss_sup"])
    sums["loss_unsup"] = sums.get("loss_unsup", 0.0) + float(out["loss_unsup"])

line: dict[str, object] = {
    "n": args.n,
    "seed": args.seed,
    "weight": args.weight,
    "weights": str(args.weights) if args.weights else "start",
    "set": args.set,
}
line |= {k: round(v / args.batches, 5) for k, v in sums.items()}
for name in parts:
    sup = line[f"{name}/sup_norm"]
    line[f"{name}/ratio"] = round(float(line[f"{name}/unsup_norm"]) / float(sup), 4) if sup else None  # type: ignore[arg-type]
print(json.dumps(line), flush=True)
