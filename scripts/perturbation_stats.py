"""What each perturbation does to z on real images, for a trained model (a diagnostic of the CCT studies).

For a model's val images: the relative change ``||p(z) - z|| / ||z||`` of each perturbation, the fraction of
z it zeroes, the fraction of feature positions the main prediction calls "object" (not background: what
Obj-Msk / Con-Msk / G-Cutout act on), and the mean max-softmax confidence of the main prediction.

    python scripts/perturbation_stats.py runs/x/model.safetensors --data-root DIR [--dataset folder] [--images 32]
"""

from __future__ import annotations

import argparse
import json

import torch

from cct_perturb import PERTURBATIONS, create_perturbation
from cct_train.data import Normalize, build_dataset
from cct_train.eval.inference import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--dataset", default="folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--background", default="0,1,3,4,5", help="background classes (CamVid's stuff)")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model(args.model)
    model = loaded.model.eval()
    dataset = build_dataset(args.dataset, root=args.data_root, split=args.split)
    count = min(args.images, len(dataset))
    images = torch.stack([dataset[i]["image"] for i in range(count)]).float() / 255
    x = Normalize(*model.normalization)(images)
    background = [int(b) for b in args.background.split(",")]
    with torch.no_grad():
        z = model.encode(x)
        main = model.main_decoder(z)
    prob = main.softmax(1)
    pred = main.argmax(1)
    objects = ~torch.isin(pred, torch.tensor(background))
    stats: dict[str, object] = {
        "images": count,
        "z_shape": list(z.shape),
        "main_confidence": round(float(prob.amax(1).mean()), 3),
        "object_fraction_of_pixels": round(float(objects.float().mean()), 3),
        "predicted_classes": sorted(int(c) for c in pred.unique()),
    }
    decoder = model.aux_decoders[0] if len(model.aux_decoders) else model.main_decoder
    for name in list(PERTURBATIONS):  # the registry: the paper's seven
        kwargs = (
            {"background": background} if name in ("object_mask", "context_mask", "guided_cutout") else {}
        )
        pert = create_perturbation(name, **kwargs)
        if name in ("object_mask", "context_mask", "guided_cutout"):
            zp = pert(z, main)
        elif name == "vat":
            zp = pert(z, decoder)
        else:
            pert.train()
            zp = pert(z)
        change = (zp - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1).clamp_min(1e-12)
        zeroed = ((zp == 0) & (z != 0)).float().mean()
        stats[name] = {"relative_change": round(float(change.mean()), 3), "zeroed": round(float(zeroed), 3)}
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
