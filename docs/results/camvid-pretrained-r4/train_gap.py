"""The train/val gap of finished study runs: each exported model's mIoU on its own labeled images (whole
frames, no augmentation, evaluated like val) beside its val mIoU. Usage: python train_gap.py RUNS_DIR..."""

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cct_train.config import load_config
from cct_train.data.augment import Normalize
from cct_train.data.build import build_split_dataset, model_normalization, split_names
from cct_train.eval.evaluate import evaluate
from cct_train.eval.inference import load_model

torch.set_num_threads(1)
for runs in sys.argv[1:]:
    for result in sorted(Path(runs).glob("n*/*/seed*/study-result.json")):
        run = result.parent
        config = load_config(run / "config.yaml")
        train_set = build_split_dataset(config, config.data.train_split)
        labeled, _ = split_names(config, train_set.names)
        model = load_model(run / "model.safetensors").model.eval()
        metrics = evaluate(
            model,
            DataLoader(train_set.subset(labeled), batch_size=16),
            train_set.num_classes,
            normalize=Normalize(*model_normalization(config)),
        )
        stored = json.loads(result.read_text())
        line = {
            "run": f"{stored['n']}/{stored['method']}/{stored['seed']}",
            "iterations": config.train.iterations,
            "val": round(100 * stored["miou"], 2),
            "train_labeled": round(100 * float(metrics.miou), 2),
        }
        print(json.dumps(line), flush=True)
