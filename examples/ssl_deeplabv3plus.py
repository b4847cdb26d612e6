"""cct-perturb inside a plain PyTorch semi-supervised loop of a model that is not CCT's.

    python examples/ssl_deeplabv3plus.py [--steps 3] [--size 64]

segmentation-models-pytorch's DeepLabV3+ (ResNet-18, random init, no download) is split where CCT
perturbs: ``z`` = the DeepLabV3+ decoder's output (B, 256, H/4, W/4), the main head = its segmentation
head. Each of the seven perturbations feeds its own auxiliary head (a copy of the segmentation head), and
the unsupervised loss is the MSE between each auxiliary softmax and the DETACHED main softmax (CCT's Lu).
The main head learns from labels only; the encoder, the decoder and the auxiliary heads also from Lu.
Random tensors stand in for the labeled / unlabeled batches: replace them with your data loaders.

Needs torch, cct-perturb and segmentation-models-pytorch (the user's own model; cct-perturb does not
depend on it). CPU-sized: 3 steps at 64x64 take a few seconds.
"""

from __future__ import annotations

import argparse
import copy

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from cct_perturb import PERTURBATIONS, create_perturbation


def main(steps: int = 3, size: int = 64, num_classes: int = 4, seed: int = 0) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    model = smp.DeepLabV3Plus(encoder_name="resnet18", encoder_weights=None, classes=num_classes)
    # Background is class 0 here; pass your dataset's background classes (or () if it has none).
    perturbations = {name: create_perturbation(name) for name in PERTURBATIONS}  # all seven, defaults
    aux_heads = nn.ModuleDict({name: copy.deepcopy(model.segmentation_head) for name in perturbations})
    for head in aux_heads.values():  # independent initialisations
        for m in head.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
    params = [*model.parameters(), *aux_heads.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)  # every random draw of the perturbations
    history = []
    model.train()
    for step in range(steps):
        x_l = torch.randn(2, 3, size, size)
        y_l = torch.randint(0, num_classes, (2, size, size))
        x_u = torch.randn(2, 3, size, size)

        loss_sup = F.cross_entropy(model(x_l), y_l, ignore_index=255)

        z = model.decoder(model.encoder(x_u))  # (B, 256, H/4, W/4): the features CCT perturbs
        with torch.no_grad():
            main = model.segmentation_head(z)  # (B, C, H, W) logits: a constant target and guide
        target = main.softmax(1)
        losses_u = []
        for name, perturb in perturbations.items():
            head = aux_heads[name]
            if perturb.inputs == "features":  # feature_noise, feature_drop, dropout
                z_p = perturb(z, generator=generator)
            elif perturb.inputs == "prediction":  # object_mask, context_mask, guided_cutout
                z_p = perturb(z, main, generator=generator)
            else:  # vat: the auxiliary head's own clean prediction is the target (standard VAT)
                z_p = perturb(z, head, generator=generator)
            losses_u.append(F.mse_loss(head(z_p).softmax(1), target))
        loss_u = torch.stack(losses_u).mean()

        loss = loss_sup + 1.0 * loss_u  # CCT ramps this weight up from 0 (cct_losses.ConsistencyWeight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record = {"step": step, "loss_sup": loss_sup.item(), "loss_u": loss_u.item()}
        record.update({f"u_{n}": v.item() for n, v in zip(perturbations, losses_u, strict=True)})
        history.append(record)
        print(f"step {step}: supervised {loss_sup.item():.4f}, consistency {loss_u.item():.5f}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    main(args.steps, args.size)
