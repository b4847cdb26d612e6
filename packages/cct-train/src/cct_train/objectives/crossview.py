"""Cross-view CCT (issue #39; ``train.unlabeled.views: weak-strong``): the unlabeled part of a step whose
target comes from another view of the image than the predictions that learn it.

The trainer makes two views of each unlabeled image: the WEAK view (the geometric augmentation only) and the
STRONG view (the weak view under image perturbations, ``cct_perturb.image.photometric``, then CutMix boxes
taken from other images of the batch). The model encodes the weak view without a graph, ``z_w``, and the
strong view with one, ``z_s``; then, in :func:`~cct_train.objectives.cct.cct_objective`:

1. :func:`weak_view_target`: the main decoder's logits on ``z_w`` (a constant), mixed with the same CutMix
   boxes as the strong images, at the decoders' own resolution (the auxiliary decoders' target) and at the
   image size (the main decoder's pseudo-label, through ``fit_logits`` like every logits-to-image step);
2. the K auxiliary decoders take CCT's feature perturbations of ``z_s`` (the prediction-guided ones guided by
   the mixed target) and learn the target with the usual Lu (the same code path, fused or not, and its
   confidence mask);
3. :func:`strong_view_loss`: optionally the main decoder on ``z_s`` learns ``argmax(target)`` by
   cross-entropy over the confident pixels (FixMatch / UniMatch's element).

With no auxiliary decoders, 1 and 3 alone are a FixMatch-style baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_train.common.logits import fit_logits

__all__ = ["CrossViewInputs", "box_at", "mix", "strong_view_loss", "weak_view_target"]


@dataclass(frozen=True)
class CrossViewInputs:
    """What a cross-view step adds to :func:`~cct_train.objectives.cct.cct_objective` (whose ``z_u`` is then
    the STRONG view's features).

    Attributes:
        z_weak: ``(B_u, D, h, w)`` the weak view's features, computed without a graph.
        size: ``(H, W)`` of the unlabeled images (both views).
        box: ``(B_u, H, W)`` bool, True where the strong image's pixel comes from ``partner`` (CutMix);
            None: no CutMix.
        partner: ``(B_u,)`` long, the image each sample's box is taken from; None with ``box`` None.
        confidence: the target's threshold: pixels whose max probability is below it are left out of the
            auxiliary decoders' loss and of the strong-view loss; None: every pixel.
        strong_weight: weight of the main decoder's strong-view loss (this step's, ramped); None: the main
            decoder does not learn from the strong view.
        aux_on_weak: the auxiliary decoders perturb ``z_weak`` (then computed WITH a graph) and learn the
            main prediction on that same weak view, unmixed, by the head's own consistency term (the paper's
            CCT on the weak view); ``confidence`` then applies to the strong-view loss only.
    """

    z_weak: Tensor
    size: tuple[int, int]
    box: Tensor | None = None
    partner: Tensor | None = None
    confidence: float | None = None
    strong_weight: float | Tensor | None = None
    aux_on_weak: bool = False

    def __post_init__(self) -> None:
        if (self.box is None) != (self.partner is None):
            raise ValueError("give the CutMix box and partner together (or neither)")
        if self.box is not None and tuple(self.box.shape[-2:]) != tuple(self.size):
            raise ValueError(
                f"CutMix box {tuple(self.box.shape)} must cover the images' size {tuple(self.size)}"
            )
        if self.confidence is not None and not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"confidence must be None or in [0, 1], got {self.confidence!r}")


def mix(x: Tensor, box: Tensor | None, partner: Tensor | None) -> Tensor:
    """``x`` (B, ..., H, W) with ``x[b]`` replaced by ``x[partner[b]]`` inside ``box[b]`` (B, H, W):
    ``cct_perturb.image.apply_cutmix``; ``x`` itself without a box."""
    if box is None or partner is None:
        return x
    from cct_perturb.image import apply_cutmix  # the optional image extra; only cross-view steps need it

    mixed: Tensor = apply_cutmix(x, box, partner)
    return mixed


def box_at(box: Tensor, size: Sequence[int]) -> Tensor:
    """A CutMix ``box`` (B, H, W) on the decoders' output grid ``size`` (h_o, w_o).

    Where the image size is not a multiple of the output stride the decoders' logits are larger than the
    image (180 rows -> 23 feature rows -> 184 logit rows) and their first H x W pixels are the image's (the
    extra rows and columns are the padding of the last feature cell, which ``fit_logits`` crops): those
    extra pixels belong to no box (they keep their own image's target). Any other grid (a genuine
    resolution difference, which ``fit_logits`` interpolates) takes the nearest pixel.
    """
    h_o, w_o = int(size[0]), int(size[1])
    height, width = box.shape[-2:]
    if (height, width) == (h_o, w_o):
        return box
    if h_o >= height and w_o >= width:
        return F.pad(box, (0, w_o - width, 0, h_o - height), value=False)
    return F.interpolate(box[:, None].float(), size=(h_o, w_o), mode="nearest")[:, 0] > 0.5


@torch.no_grad()
def weak_view_target(
    main_decoder: nn.Module, cross_view: CrossViewInputs, stride: int, logits: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The weak view's target, mixed like the strong images: ``(native, image)``.

    ``native``: ``(B_u, C, h_o, w_o)`` the main decoder's logits on ``cross_view.z_weak`` at its own
    resolution, mixed with the box mapped by :func:`box_at`; the auxiliary decoders' target (Lu runs at their
    native resolution, as in the paper's CCT). ``image``: ``(B_u, C, H, W)`` the same logits through
    ``fit_logits`` (``stride``: the encoder's output stride; as the labeled loss maps logits onto labels),
    mixed with the box itself; the main decoder's pseudo-label on the strong view. Mixing logits and then
    taking the softmax is the same as mixing probabilities (the softmax is per pixel); so are the confidence
    masks computed from them. No graph (a constant target). ``logits``: the main decoder's logits on
    ``z_weak`` when the caller has them already (computed without a graph).
    """
    if logits is None:  # no graph even when z_weak has one (aux_view weak): this function is no_grad
        logits = main_decoder(cross_view.z_weak)
    box, partner = cross_view.box, cross_view.partner
    image = mix(fit_logits(logits, cross_view.size, stride=stride), box, partner)
    if tuple(logits.shape[-2:]) == tuple(cross_view.size):
        return image, image
    native = mix(logits, None if box is None else box_at(box, logits.shape[-2:]), partner)
    return native, image


def strong_view_loss(
    logits: Tensor, target: Tensor, confidence: float | None = None
) -> tuple[Tensor, Tensor]:
    """``(loss, confident)``: the main decoder on the strong view against the weak view's hard pseudo-label.

    ``logits`` (B, C, H, W) with a graph, ``target`` (B, C, H, W) the weak view's (mixed) logits, a
    constant. The loss is the cross-entropy of ``logits`` against ``argmax(target)`` summed over the
    pixels whose target max-probability is at least ``confidence`` and divided by ALL pixels (FixMatch's and
    UniMatch's mean: the loss grows with the confident share instead of giving a handful of confident
    pixels early in training the weight of a whole batch). ``confident``: that share, 0-d, detached (1 with
    ``confidence`` None).

    >>> target = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2): pixel 0 confident in class 0
    >>> loss, share = strong_view_loss(torch.zeros(1, 2, 1, 2), target, confidence=0.9)
    >>> round(float(loss), 4), float(share)  # log(2) on one pixel of two
    (0.3466, 0.5)
    """
    with torch.no_grad():
        probs = torch.softmax(target.float(), dim=1)
        top, label = probs.max(dim=1)
        keep = torch.ones_like(top) if confidence is None else (top >= float(confidence)).to(top.dtype)
    per_pixel = F.cross_entropy(logits.float(), label, reduction="none")
    # Divided on the device by the pixel count (a Python int): no host sync.
    loss = (per_pixel * keep).sum() / keep.numel()
    return loss, keep.mean()
