"""Pilot: one run (sup or cct) with a pretrained encoder; prints train(labeled)/val mIoU."""
import json, sys, time, copy, argparse
from pathlib import Path
import torch
import yaml
from cct_train.config import config_from_dict
from cct_train.trainer import Trainer
from cct_train.evaluate import evaluate
from cct_train.study import resized_copy
from torch.utils.data import DataLoader

p = argparse.ArgumentParser()
p.add_argument("--name"); p.add_argument("--mode", default="supervised")
p.add_argument("--n", type=int, default=20); p.add_argument("--seed", type=int, default=0)
p.add_argument("--resize", default="90,120"); p.add_argument("--crop", default="72,96")
p.add_argument("--os", type=int, default=8); p.add_argument("--iters", type=int, default=400)
p.add_argument("--set", action="append", default=[])
p.add_argument("--pert", default='{"feature_noise": 2, "feature_drop": 2, "guided_cutout": 2, "dropout": 2, "context_mask": 1, "object_mask": 1, "vat": 1}')
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
rs = tuple(int(x) for x in a.resize.split(",")); cr = tuple(int(x) for x in a.crop.split(","))
cfg = {
  "experiment": {"name": a.name, "output_dir": f"/tmp/cct/runs/{a.name}", "seed": a.seed},
  "model": {"encoder": "timm:tf_efficientnet_lite0", "weights": "/tmp/cct/lite0.safetensors",
            "output_stride": a.os, "psp_channels": 64, "background": [0,1,3,4,5], "consistency": "mse",
            "perturbations": json.loads(a.pert) if a.mode == "cct" else {}},
  "data": {"dataset": "camvid", "root": "/work/shared/data/camvid", "crop_size": list(cr), "scale_range": [0.75, 1.5],
           "hflip": True, "batch_size": 4, "val_batch_size": 16, "num_workers": 0, "check": "quick",
           "split": {"n_labeled": a.n, "seed": a.seed}},
  "train": {"mode": a.mode, "iterations": a.iters,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "backbone_lr_factor": 0.1, "poly_power": 0.9},
            "supervised_loss": "ce", "consistency": {"weight": 30.0, "rampup": 0.1, "schedule": "sigmoid"},
            "mixed_precision": "bf16", "eval_every": 0, "checkpoint_every": 0, "log_every": 50, "trackers": ["csv"]},
}
for s in a.set:
    k, v = s.split("=", 1); d = cfg
    ks = k.split(".")
    for kk in ks[:-1]: d = d.setdefault(kk, {})
    d[ks[-1]] = yaml.safe_load(v)
base = config_from_dict(cfg)
root = resized_copy(base, rs, Path(f"/tmp/cct/data/camvid-{rs[0]}x{rs[1]}"))
from cct_train.study import with_resized_data
config = with_resized_data(base, root)
t0 = time.time()
tr = Trainer(config, quiet=True)
fit = tr.fit()
val = fit.metrics["miou"]
ds = tr.data.labeled_loader.dataset
print("VAL", val, flush=True)
tl = evaluate(tr.unwrapped, DataLoader(ds, batch_size=16), tr.data.num_classes, normalize=tr.data.normalize)
out = {"name": a.name, "mode": a.mode, "n": a.n, "seed": a.seed, "val": round(100*val, 2), "train_lab": round(100*float(tl.miou), 2),
       "sec": round(time.time()-t0), "per_class": {k: (None if v is None else round(100*v,1)) for k, v in fit.metrics["per_class_iou"].items()}}
print(json.dumps(out), flush=True)
with open("/tmp/cct/pilot_results.jsonl", "a") as f: f.write(json.dumps(out) + "\n")
