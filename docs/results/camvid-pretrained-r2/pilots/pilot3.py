"""Pilot v3: how much of a run's val mIoU is BatchNorm statistics? (issue #15, round 3)

Trains one run of the pretrained preset (supervised or full CCT), then evaluates the same weights with
 - the running statistics training left (what the study reports),
 - statistics re-estimated over many training batches (precise BN: cumulative average, no weight change),
 - the trained statistics nudged by 10 more momentum-0.1 updates on fresh training batches (3 draws),
   which is the size of the lottery the last steps of training play with the running statistics.
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cct_train.common.checkpoint import load_weights
from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer
from cct_train.eval.evaluate import evaluate
from cct_train.study.run import _with_study_data, study_precision
from cct_train.study.runs import run_config
from cct_train.study.schema import base_config, load_study_config

p = argparse.ArgumentParser()
p.add_argument("--method", default="supervised")
p.add_argument("--n", type=int, default=20)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="/tmp/pilot3")
p.add_argument("--set", action="append", default=[])
a = p.parse_args()
torch.set_num_threads(1)

study = load_study_config("configs/study/camvid-pretrained.yaml", a.set)
base, _ = study_precision(base_config(study))
data = base.to_dict()
data["data"]["root"] = "/work/shared/data/camvid"
base = config_from_dict(data)
runs = Path(a.out)
base = _with_study_data(study, base, runs)
run_dir = runs / f"n{a.n}-{a.method}-s{a.seed}"
config = config_from_dict(run_config(study, base, a.n, a.method, a.seed, run_dir))
t0 = time.time()
tr = Trainer(config, quiet=True)
exported = run_dir / "model.safetensors"
if exported.is_file():  # trained before: analyse the exported weights again
    state, _ = load_weights(exported)
    tr.unwrapped.load_state_dict(state)
    trained_miou = None
else:
    trained_miou = tr.fit().metrics["miou"]
model = tr.unwrapped
model.eval()
norm = tr.data.normalize
bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def val() -> float:
    s = evaluate(model, tr.data.val_loader, tr.data.num_classes, normalize=norm)
    return round(100 * float(s.miou), 2)


def train_miou() -> float:
    ds = tr.data.labeled_loader.dataset
    s = evaluate(model, DataLoader(ds, batch_size=16), tr.data.num_classes, normalize=norm)
    return round(100 * float(s.miou), 2)


def batches(k: int, seed: int):
    """k training batches (labeled, and for CCT unlabeled too, alternating as training encodes them)."""
    g = torch.Generator().manual_seed(seed)
    loaders = [tr.data.labeled_loader] + ([tr.data.unlabeled_loader] if a.method != "supervised" else [])
    its = [iter(ld) for ld in loaders]
    out = []
    while len(out) < k:
        for i, ld in enumerate(loaders):
            try:
                b = next(its[i])
            except StopIteration:
                its[i] = iter(ld)
                b = next(its[i])
            images, _ = tr.domains[0].augment(b["image"], b.get("mask"), generator=g)
            out.append(images)
    return out[:k]


@torch.no_grad()
def forward_bn(images: list[torch.Tensor]) -> None:
    model.train()
    for x in images:
        model.encode(x)  # already normalised by the train transform
    model.eval()


out = {"method": a.method, "n": a.n, "seed": a.seed, "set": a.set, "val_trained": val()}
if trained_miou is not None:
    assert abs(100 * trained_miou - out["val_trained"]) < 0.01
out["train_trained"] = train_miou()
saved = copy.deepcopy(model.state_dict())
draws = []
for r in range(3):
    model.load_state_dict(saved)
    forward_bn(batches(10, 100 + r))
    draws.append(val())
out["val_nudged"] = draws
for k in (50, 200):
    model.load_state_dict(saved)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    forward_bn(batches(k, 7))
    out[f"val_precise{k}"] = val()
    out[f"train_precise{k}"] = train_miou()
    for m in bns:
        m.momentum = 0.1
out["sec"] = round(time.time() - t0)
print(json.dumps(out), flush=True)
with open(runs / "pilot3_results.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
