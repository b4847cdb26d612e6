"""cct-perturb inside a UniMatch-style DeepLabV3+ whose decoder takes two inputs, ``_decode(c1, c4)``.

    python examples/unimatch_two_input_decoder.py [--steps 3] [--size 97] [--bf16]

UniMatch (Yang et al., CVPR 2023) builds DeepLabV3+ at output stride 16: ``c1`` (the backbone's first stage,
stride 4) and ``c4`` (its last, stride 16) go to ``_decode(c1, c4)``: ASPP on ``c4``, upsampled to ``c1``'s
size, concatenated with a reduced ``c1``, fused and classified at stride 4; ``forward`` resizes the logits
to the input. ONE decoder decodes the clean and the perturbed features, inside one training forward.

Here the seven CCT perturbations perturb ``c4`` of the unlabeled images and go through that same decoder,
as a closure over ``c1`` (``lambda t: model._decode(c1_u, t)``), which is how such a codebase calls them:

- the clean decode of the step is done first and its graph is alive when VAT searches through the same
  decoder (its BatchNorm layers); the step back-propagates once at the end. VAT runs every module it
  calls on copies of its buffers, so the running statistics count the step's own decodes only (the
  script checks it) and the clean graph still back-propagates;
- G-Cutout and the masks are guided by the decoder's stride-4 logits over the stride-16 ``c4``: G-Cutout's
  minimum region is in input pixels at ``stride=16`` (given below), whatever the guide's resolution;
- ``--bf16`` runs the step under CPU bf16 autocast (VAT's forward-mode AD through BatchNorm included).

The unsupervised loss is CCT's (MSE between each perturbed softmax and the detached clean one); UniMatch's
would be a confidence-masked cross-entropy to the weak view's pseudo-labels: swap it in, the perturbation
calls stay the same. Needs torch and cct-perturb only: a small backbone with UniMatch's strides stands in
for its ResNet (``base_forward`` returns ``[c1, c2, c3, c4]`` like UniMatch's), and random tensors stand in
for the data loaders. CPU-sized: 3 steps at 97x97 take a few seconds.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from cct_perturb import PERTURBATIONS, create_perturbation


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class Backbone(nn.Module):
    """Stands in for UniMatch's ResNet: ``base_forward`` -> [c1 (stride 4), c2 (8), c3 (16), c4 (16)]."""

    def __init__(self, c1: int = 32, c4: int = 96) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 16, stride=2), nn.MaxPool2d(3, 2, 1))  # stride 4
        self.layer1 = conv_bn_relu(16, c1)
        self.layer2 = conv_bn_relu(c1, 48, stride=2)
        self.layer3 = conv_bn_relu(48, 64, stride=2)
        self.layer4 = conv_bn_relu(64, c4, dilation=2)  # output stride 16: the last stage is dilated

    def base_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3, self.layer4(c3)]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling at output stride 16 (dilations 6, 12, 18 and image pooling)."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, cout, 1), *(conv_bn_relu(cin, cout, 3, dilation=r) for r in rates)]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(cin, cout, 1))
        self.project = conv_bn_relu(5 * cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        return self.project(torch.cat([*(b(x) for b in self.branches), pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """UniMatch's DeepLabV3+ layout: ``forward(x)`` = ``_decode(c1, c4)`` resized to the input."""

    def __init__(self, num_classes: int, c1: int = 32, c4: int = 96, mid: int = 48) -> None:
        super().__init__()
        self.backbone = Backbone(c1, c4)
        self.head = ASPP(c4, mid)
        self.reduce = conv_bn_relu(c1, 12, 1)
        self.fuse = nn.Sequential(conv_bn_relu(mid + 12, mid), conv_bn_relu(mid, mid))
        self.classifier = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone.base_forward(x)
        out = self._decode(feats[0], feats[-1])
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)

    def _decode(self, c1: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        c4 = self.head(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        c1 = self.reduce(c1)
        return self.classifier(self.fuse(torch.cat([c1, c4], dim=1)))


def main(
    steps: int = 3, size: int = 97, num_classes: int = 4, bf16: bool = False, seed: int = 0
) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    model = DeepLabV3Plus(num_classes).train()
    # c4 is at output stride 16: G-Cutout's minimum region (512 input pixels) is 2 feature pixels there.
    # Background is class 0 here; pass your dataset's background classes (or () if it has none).
    kwargs = {"guided_cutout": {"stride": 16}}
    perturbations = {name: create_perturbation(name, **kwargs.get(name, {})) for name in PERTURBATIONS}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)  # every random draw of the perturbations
    decoder_bn = model.head.project[1]  # one of the decoder's BatchNorm layers, to check what it counted
    history = []
    for step in range(steps):
        x_l = torch.randn(2, 3, size, size)
        y_l = torch.randint(0, num_classes, (2, size, size))
        y_l[:, :4] = 255  # void pixels, as in VOC's labels
        x_u = torch.randn(2, 3, size, size)
        counted = int(decoder_bn.num_batches_tracked)

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            feats = model.backbone.base_forward(torch.cat([x_l, x_u]))
            c1, c4 = feats[0], feats[-1]  # (B, 32, 25, 25) at stride 4, (B, 96, 7, 7) at stride 16
            logits = model._decode(c1, c4)  # the clean decode: its graph stays alive until backward
            pred_l, pred_u = F.interpolate(
                logits, size=(size, size), mode="bilinear", align_corners=True
            ).chunk(2)
            loss_sup = F.cross_entropy(pred_l.float(), y_l, ignore_index=255)

            c1_u, c4_u = c1[2:], c4[2:]
            guide = logits[2:].detach()  # the decoder's stride-4 logits guide the masks and G-Cutout
            target = pred_u.detach().float().softmax(1)

            def decode_u(t: torch.Tensor, c1_u: torch.Tensor = c1_u) -> torch.Tensor:
                return model._decode(c1_u, t)  # the SAME decoder, two inputs, c1 fixed

            losses_u = []
            for perturb in perturbations.values():
                if perturb.inputs == "features":  # feature_noise, feature_drop, dropout
                    c4_p = perturb(c4_u, generator=generator)
                elif perturb.inputs == "prediction":  # object_mask, context_mask, guided_cutout
                    c4_p = perturb(c4_u, guide, generator=generator)
                else:  # vat: through the shared decoder, whose own clean prediction is the target
                    c4_p = perturb(c4_u, decode_u, generator=generator)
                pred_p = F.interpolate(decode_u(c4_p), size=(size, size), mode="bilinear", align_corners=True)
                losses_u.append(F.mse_loss(pred_p.float().softmax(1), target))
            loss_u = torch.stack(losses_u).mean()
            loss = loss_sup + 1.0 * loss_u  # ramp the weight up from 0 in real training

        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # the clean decode's graph, saved before VAT's search, back-propagates
        optimizer.step()
        # The decoder's BatchNorm counted this step's own decodes: the clean one and one per
        # perturbation; VAT's search through it counted none.
        decodes = int(decoder_bn.num_batches_tracked) - counted
        if decodes != 1 + len(perturbations):
            raise RuntimeError(f"the decoder's BatchNorm counted {decodes} batches in one step")
        record = {"step": step, "loss_sup": loss_sup.item(), "loss_u": loss_u.item(), "decodes": decodes}
        record.update({f"u_{n}": v.item() for n, v in zip(perturbations, losses_u, strict=True)})
        history.append(record)
        print(
            f"step {step}: supervised {loss_sup.item():.4f}, consistency {loss_u.item():.5f}, "
            f"decoder BatchNorm counted {decodes} batches"
        )
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=97)
    parser.add_argument("--bf16", action="store_true", help="CPU bf16 autocast")
    args = parser.parse_args()
    main(args.steps, args.size, bf16=args.bf16)
