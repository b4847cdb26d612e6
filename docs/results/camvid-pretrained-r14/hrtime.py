"""Step time of the pretrained-hr budget's runs on this CPU: supervised, CCT with 11 or 30 decoders (1 thread).

Run as: python hrtime.py STUDY.yaml supervised,cct
"""

import sys
import time
from pathlib import Path

import torch

from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer
from cct_train.study.data import resized_copy, with_resized_data
from cct_train.study.schema import base_config, load_study_config


def seconds_per_step(trainer: Trainer, warmup: int = 3, steps: int = 8) -> float:
    def step() -> None:
        ((labeled, unlabeled),) = trainer._next_batches().values()
        trainer.train_step(labeled, unlabeled)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


torch.set_num_threads(1)
study = load_study_config(sys.argv[1], ["base.data.root=/work/shared/data/camvid"])
base = base_config(study)
base = with_resized_data(base, resized_copy(base, (180, 240), Path("/work/s36/camvid-180x240")))
for method in sys.argv[2].split(","):
    d = base.to_dict()
    d["train"]["mode"] = "supervised" if method == "supervised" else "cct"
    d["model"]["perturbations"] = study.decoders("cct") if method != "supervised" else {}
    d["data"]["split"] = {"n_labeled": 20, "seed": 0}
    d["experiment"]["output_dir"] = f"/tmp/hrtime/{method}"
    trainer = Trainer(config_from_dict(d, source="hrtime"))
    trainer.quiet = True
    trainer.model.train()
    s = seconds_per_step(trainer)
    print(f"{sys.argv[1]} {method}: {s:.3f} s/step -> 1600 steps {1600 * s / 60:.0f} min", flush=True)
