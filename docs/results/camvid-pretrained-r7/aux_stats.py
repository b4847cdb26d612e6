"""What each trained auxiliary decoder of a finished CCT run does on the val frames: how much its
perturbation changes z, how far its prediction is from the main decoder's (the consistency loss it trains
on, and the share of pixels where the two argmaxes agree), and its own mIoU against the masks, beside the
main decoder's. Also the share of z positions the main prediction calls "object" (what Obj-Msk, Con-Msk
and G-Cutout act on). The model's own perturbations and decoders, in training mode for the random ones.
Usage: python aux_stats.py OUT.jsonl CCT_RUN_DIR..."""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cct_train.config import load_config
from cct_train.engine.trainer import Trainer
from cct_train.eval.evaluate import prepare_images
from cct_train.eval.metrics import ConfusionMatrix
from cct_train.objectives.cct import perturb_features, resize_logits

torch.set_num_threads(1)


out = Path(sys.argv[1])
for run_dir in map(Path, sys.argv[2:]):
    config = load_config(run_dir / "config.yaml")
    config = config.model_copy(
        update={"experiment": config.experiment.model_copy(update={"output_dir": f"/tmp/aux-{run_dir.name}"})}
    )
    trainer = Trainer(config, quiet=True)
    model = trainer.unwrapped
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    model.eval()
    model.perturbations.train()  # the random perturbations draw as in training
    model.fuse_aux_decoders = False  # VAT through the decoder module itself (same direction, simpler call)
    run = trainer.domains[0]
    classes = run.data.num_classes
    generator = torch.Generator().manual_seed(0)
    names = [name for name, _, _ in model.perturbation_instances()]
    sums: dict[str, float] = defaultdict(float)
    matrices = {name: ConfusionMatrix(classes, 255) for name in ["main", *names]}
    positions = 0
    for batch in run.val_loader:
        images = prepare_images(batch["image"], run.data.normalize)
        target = batch["mask"].long()
        with torch.no_grad():
            z = model.encode(images)
            main = model.main_decoder(z)
        background = torch.tensor(model.background)
        coarse = F.interpolate(main, size=z.shape[-2:], mode="bilinear").argmax(1)
        sums["object_positions"] += float((~torch.isin(coarse, background)).sum())
        positions += coarse.numel()
        size = target.shape[-2:]
        main_prob = main.softmax(1)
        matrices["main"].update(resize_logits(main, size).argmax(1), target)
        perturbed = perturb_features(model, z, main, generator=generator)
        with torch.no_grad():
            for k, ((name, _, decoder), z_p) in enumerate(
                zip(model.perturbation_instances(), perturbed, strict=True)
            ):
                key = f"{k}:{name}"
                aux = decoder(z_p)
                change = (z_p - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1).clamp_min(1e-12)
                sums[f"{key}/relative_change"] += float(change.sum())
                sums[f"{key}/consistency_mse"] += float(F.mse_loss(aux.softmax(1), main_prob)) * len(images)
                sums[f"{key}/agreement"] += float((aux.argmax(1) == main.argmax(1)).float().mean()) * len(
                    images
                )
                matrices[name].update(resize_logits(aux, size).argmax(1), target)
        sums["images"] += len(images)
    count = sums.pop("images")
    line: dict[str, object] = {
        "run": str(run_dir),
        "object_share_of_z": round(sums.pop("object_positions") / positions, 3),
        "miou": {name: round(100 * float(m.compute().miou), 2) for name, m in matrices.items()},
    }
    line |= {key: round(value / count, 4) for key, value in sorted(sums.items())}
    print(json.dumps(line), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(line) + "\n")
