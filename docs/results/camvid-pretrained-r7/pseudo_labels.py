"""How good are the targets Lu trains towards? Each finished run's main prediction on its own unlabeled
images (the CamVid training frames outside its labeled split, whose masks CCT never sees), scored against
their masks: mIoU and pixel accuracy, and the pixel accuracy and coverage of the pixels whose max
probability reaches 0.5, 0.7 and 0.9. Whole frames, no augmentation, the final weights.
Usage: python pseudo_labels.py OUT.jsonl RUN_DIR..."""

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cct_train.config import load_config
from cct_train.data.augment import Normalize
from cct_train.data.build import build_split_dataset, model_normalization, split_names
from cct_train.eval.evaluate import prepare_images
from cct_train.eval.inference import load_model
from cct_train.eval.metrics import ConfusionMatrix

THRESHOLDS = (0.5, 0.7, 0.9)
torch.set_num_threads(1)
out = Path(sys.argv[1])
for run in map(Path, sys.argv[2:]):
    config = load_config(run / "config.yaml")
    train_set = build_split_dataset(config, config.data.train_split)
    _, unlabeled = split_names(config, train_set.names)
    model = load_model(run / "model.safetensors").model.eval()
    normalize = Normalize(*model_normalization(config))
    matrix = ConfusionMatrix(train_set.num_classes, 255)
    counts = {t: [0, 0] for t in THRESHOLDS}  # correct, kept
    pixels = 0
    with torch.no_grad():
        for batch in DataLoader(train_set.subset(unlabeled), batch_size=16):
            prob = model.predict(prepare_images(batch["image"], normalize)).float().softmax(1)
            confidence, pred = prob.max(1)
            target = batch["mask"].long()
            matrix.update(pred, target)
            valid = target != 255
            pixels += int(valid.sum())
            for t in THRESHOLDS:
                kept = valid & (confidence >= t)
                counts[t][0] += int((kept & (pred == target)).sum())
                counts[t][1] += int(kept.sum())
    scores = matrix.compute()
    line = {
        "run": str(run),
        "unlabeled_images": len(unlabeled),
        "miou": round(100 * float(scores.miou), 2),
        "pixel_accuracy": round(100 * float(scores.pixel_accuracy), 2),
    } | {
        f"conf>={t}": {"accuracy": round(100 * c / max(k, 1), 2), "coverage": round(100 * k / pixels, 1)}
        for t, (c, k) in counts.items()
    }
    print(json.dumps(line), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(line) + "\n")
