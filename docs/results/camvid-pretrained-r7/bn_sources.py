"""Does CCT lose the tree class through its BatchNorm statistics? Each finished study run's exported weights
are evaluated on val with the statistics training left, and with the statistics re-estimated (weights frozen)
over augmented crops of its labeled images only, of its unlabeled images only, and of both in turn.
A CCT run's encoder sees labeled and unlabeled batches in train mode, so its running statistics mix both;
a supervised run's see labeled batches only. Usage: python bn_sources.py OUT.jsonl RUN_DIR..."""

import json
import sys
from itertools import cycle, islice
from pathlib import Path

import torch
from safetensors.torch import load_file

from cct_train.config import load_config
from cct_train.engine.batchnorm import recalibrate_batchnorm
from cct_train.engine.trainer import Trainer

BATCHES = 100
torch.set_num_threads(1)


def crops(trainer: Trainer, sources: str, seed: int):
    """Augmented, normalised image batches from the labeled and / or unlabeled loader, in turn."""
    run = trainer.domains[0]
    loaders = {"labeled": run.labeled_loader, "unlabeled": run.unlabeled_loader}
    streams = [cycle(loaders[name]) for name in sources.split("+")]
    generator = torch.Generator().manual_seed(seed)
    while True:
        for stream in streams:
            images, _ = run.augment(next(stream)["image"], None, generator=generator)
            yield images


def scores(trainer: Trainer) -> dict:
    result = trainer.validate()
    return {"miou": round(100 * result["miou"], 2)} | {
        name: round(100 * value, 1) for name, value in result["per_class_iou"].items()
    }


out = Path(sys.argv[1])
for run_dir in map(Path, sys.argv[2:]):
    # The CCT run's config of the same split for every run (its loaders include the unlabeled images), so
    # a supervised model's statistics can be re-estimated from both sources too; its weights load into the
    # CCT model with the auxiliary decoders left out.
    config = load_config(run_dir.parent.parent / "cct" / run_dir.name / "config.yaml")
    config = config.model_copy(
        update={"experiment": config.experiment.model_copy(update={"output_dir": f"/tmp/bn-{run_dir.name}"})}
    )
    trainer = Trainer(config, quiet=True)
    weights = load_file(run_dir / "model.safetensors")
    load = trainer.unwrapped.load_state_dict(weights, strict=False)
    if load.unexpected_keys or not all("aux" in k for k in load.missing_keys):
        raise SystemExit(f"{run_dir}: weights do not fit the CCT model: {load}")
    trainer.model.eval()
    line = {"run": str(run_dir), "as_trained": scores(trainer)}
    for sources in ("labeled", "unlabeled", "labeled+unlabeled"):
        trainer.unwrapped.load_state_dict(weights, strict=False)
        with trainer.accelerator.autocast():
            recalibrate_batchnorm(trainer.unwrapped, islice(crops(trainer, sources, 1234), BATCHES))
        line[sources] = scores(trainer)
    print(json.dumps(line), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(line) + "\n")
