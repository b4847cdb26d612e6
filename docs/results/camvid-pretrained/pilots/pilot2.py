"""Pilot v2: one run (sup or cct) with the pretrained encoder; optional lr warm-up and dead-unit logging."""
import json, sys, time, argparse, math
from pathlib import Path
import torch, yaml
from cct_train.config import config_from_dict
from cct_train import trainer as trainer_mod
from cct_train.trainer import Trainer
from cct_train.evaluate import evaluate
from cct_train.study import resized_copy, with_resized_data
from torch.utils.data import DataLoader

p = argparse.ArgumentParser()
p.add_argument("--name"); p.add_argument("--mode", default="supervised")
p.add_argument("--n", type=int, default=20); p.add_argument("--seed", type=int, default=0)
p.add_argument("--split-seed", type=int, default=None)
p.add_argument("--resize", default="90,120"); p.add_argument("--crop", default="72,96")
p.add_argument("--iters", type=int, default=800); p.add_argument("--warmup", type=int, default=0)
p.add_argument("--set", action="append", default=[])
p.add_argument("--pert", default='{"feature_noise": 2, "feature_drop": 2, "guided_cutout": 2, "dropout": 2, "context_mask": 1, "object_mask": 1, "vat": 1}')
p.add_argument("--dead", action="store_true")
p.add_argument("--no-relu", action="store_true")
p.add_argument("--bias", type=float, default=None)
a = p.parse_args()
torch.set_num_threads(1)
rs = tuple(int(x) for x in a.resize.split(",")); cr = tuple(int(x) for x in a.crop.split(","))
study = yaml.safe_load(open("configs/study/camvid-pretrained.yaml"))
cfg = study["base"]
cfg["experiment"].update({"name": a.name, "output_dir": f"/tmp/cct/runs/{a.name}", "seed": a.seed})
cfg["data"]["root"] = "/work/shared/data/camvid"
cfg["data"]["split"] = {"n_labeled": a.n, "seed": a.seed if a.split_seed is None else a.split_seed}
cfg["model"]["perturbations"] = json.loads(a.pert) if a.mode == "cct" else {}
cfg["train"]["mode"] = a.mode; cfg["train"]["iterations"] = a.iters
for s in a.set:
    k, v = s.split("=", 1); d = cfg; ks = k.split(".")
    for kk in ks[:-1]: d = d.setdefault(kk, {})
    d[ks[-1]] = yaml.safe_load(v)
if a.warmup:
    poly = trainer_mod.poly_schedule
    trainer_mod.poly_schedule = lambda total, power: (lambda it: min(1.0, (it + 1) / a.warmup) * poly(total, power)(it))
base = config_from_dict(cfg)
root = resized_copy(base, rs, Path(f"/tmp/cct/data/camvid-{rs[0]}x{rs[1]}"))
config = with_resized_data(base, root)
t0 = time.time()
if a.no_relu or a.bias is not None:
    from cct_train import decoders as _dec
    _orig_init = _dec.SubPixelBlock.__init__
    def _init(self, channels, *, relu=True):
        _orig_init(self, channels, relu=relu and not a.no_relu)
        if a.bias is not None:
            with torch.no_grad(): self.conv.bias.fill_(a.bias)
    _dec.SubPixelBlock.__init__ = _init
tr = Trainer(config, quiet=True)
deadlog = []
if a.dead:
    dec = tr.unwrapped.main_decoder
    state = {"it": 0}
    def hook(name):
        def f(mod, inp, out):
            if tr.unwrapped.training and out.shape[0] >= 4:
                x = out.detach().float()
                alive = (x > 0).flatten(2).any(-1).any(0) if name != "conv1x1" else None
                state.setdefault(name, []).append(alive)
        return f
    for i, b in enumerate(dec.blocks):
        b.relu.register_forward_hook(hook(f"block{i}"))
fit = tr.fit()
val = fit.metrics["miou"]
ds = tr.data.labeled_loader.dataset
tl = evaluate(tr.unwrapped, DataLoader(ds, batch_size=16), tr.data.num_classes, normalize=tr.data.normalize)
out = {"name": a.name, "mode": a.mode, "n": a.n, "seed": a.seed, "warmup": a.warmup, "no_relu": a.no_relu, "bias": a.bias, "set": a.set,
       "val": round(100*val, 2), "train_lab": round(100*float(tl.miou), 2), "sec": round(time.time()-t0),
       "per_class": {k: (None if v is None else round(100*v,1)) for k, v in fit.metrics["per_class_iou"].items()}}
if a.dead:
    for k, v in state.items():
        if k.startswith("block") and v:
            # channels (of 4C before shuffle) alive at some pixel of the batch, at a few points of training
            out[f"alive_{k}"] = {str(i): int(v[i].sum()) for i in (0, 10, 50, 200, len(v)-1) if i < len(v) and v[i] is not None}
print(json.dumps(out), flush=True)
with open("/tmp/cct/pilot2_results.jsonl", "a") as f: f.write(json.dumps(out) + "\n")
