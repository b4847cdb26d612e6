"""Demo pilot: one run of the demo config (mode, seed, overrides), one torch thread; prints a JSON line."""
import argparse, json, sys, time
from pathlib import Path
import torch, yaml
from cct_train.config import config_from_dict
from cct_train.tools import demo as demo_mod
from cct_train.engine.trainer import Trainer

p = argparse.ArgumentParser()
p.add_argument("--name"); p.add_argument("--mode", default="supervised")
p.add_argument("--seed", type=int, default=0); p.add_argument("--iters", type=int, default=300)
p.add_argument("--data", default="/tmp/dp/data"); p.add_argument("--set", action="append", default=[])
a = p.parse_args()
torch.set_num_threads(1)
out = Path("/tmp/dp/runs") / a.name
cfg = demo_mod.demo_config(None, Path(a.data).parent, mode=a.mode, iterations=a.iters, encoder=demo_mod.PRETRAINED_ENCODER,
                           seed=a.seed, weights=demo_mod.PRETRAINED_WEIGHTS).to_dict()
cfg["experiment"]["output_dir"] = str(out)
cfg["data"]["root"] = a.data
cfg["train"]["checkpoint_every"] = 0
for s in a.set:
    k, v = s.split("=", 1); d = cfg; ks = k.split(".")
    for kk in ks[:-1]: d = d.setdefault(kk, {})
    d[ks[-1]] = yaml.safe_load(v)
config = config_from_dict(cfg)
t0 = time.time()
tr = Trainer(config, quiet=True)
fit = tr.fit()
m = fit.metrics
res = {"name": a.name, "mode": a.mode, "seed": a.seed, "iters": a.iters, "set": a.set, "miou": round(100 * m["miou"], 2),
       "per_class": {k: (None if v is None else round(100 * v, 1)) for k, v in m["per_class_iou"].items()},
       "train_s": round(fit.seconds), "n_l": tr.data.n_labeled, "n_u": tr.data.n_unlabeled}
print(json.dumps(res), flush=True)
with open("/tmp/dp/results.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
