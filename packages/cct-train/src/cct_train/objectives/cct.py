"""One CCT training step's objective, top to bottom (paper 3.1-3.3): L = Ls + w_u Lu + w_w Lw.

Where the step runs: the trainer (``engine.trainer.Trainer.train_step``) augments a labeled and an unlabeled
batch, reads the weights w_u(t) / w_w of this step (``engine.schedules``) and calls the model once (one DDP
forward); the model encodes both batches, ``z = h(x)`` (``CCTModel.forward``, or the shared encoder of
``MultiDomainCCT``), and hands the features to :func:`cct_objective`, which is the rest of the step:

1. Ls: the main decoder ``g`` on the labeled features against the masks, by the head's
   :class:`~.losses.SupervisedTerm` (CE, or ab-CE at its threshold of this step);
2. the main prediction on the unlabeled features, ``g(z_u)``, as a constant (no graph);
3. :func:`perturb_features`: each auxiliary decoder's perturbation ``p_k(z_u)`` (some guided by ``g(z_u)``);
4. :func:`unsupervised_losses`: Lu, the K auxiliary decoders against ``g(z_u)`` by the head's
   :class:`~.losses.ConsistencyTerm` (its fused path, :mod:`.fused`, when it applies), and Lw on
   pseudo-labels;
5. :func:`total_loss`: the weighted sum; the trainer back-propagates it and steps the optimizer.

Each loss has one owner (:mod:`.losses`) that holds its kind and threshold; the consistency kinds' formulas
are ``cct_losses``' per-element definitions, shared by the plain and the fused path.

Cross-view CCT (``train.unlabeled.views: weak-strong``, :mod:`.crossview`): ``z_u`` is the STRONG view's
features and the target of steps 2-4 is the main prediction on the WEAK view, mixed with the strong view's
CutMix boxes (instead of ``g(z_u)``); the main decoder may also learn it on the strong view
(``loss_strong``): L = Ls + w_u Lu + w_w Lw + w_s Ls_strong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_losses import weak_label_loss
from cct_train.common.logits import fit_logits
from cct_train.objectives.crossview import CrossViewInputs, strong_view_loss, weak_view_target
from cct_train.objectives.fused import SubPixelRows, is_subpixel_decoder
from cct_train.objectives.losses import ConsistencyTerm, SupervisedTerm

__all__ = [
    "CCTDecoders",
    "CrossViewInputs",
    "cct_objective",
    "perturb_features",
    "resize_logits",
    "total_loss",
    "unsupervised_losses",
]


class CCTDecoders(Protocol):
    """What the objective reads of a model: its decoders, perturbations and the owners of its losses (a
    :class:`~cct_train.models.cct.CCTModel`, or one domain's head of the multi-domain model)."""

    # Read-only members (properties): covariant, so a model whose main_decoder is an UpsampleDecoder fits.
    @property
    def main_decoder(self) -> nn.Module: ...
    @property
    def aux_decoders(self) -> nn.ModuleList: ...
    @property
    def perturbations(self) -> nn.ModuleList: ...
    @property
    def supervised_term(self) -> SupervisedTerm: ...
    @property
    def consistency_term(self) -> ConsistencyTerm: ...
    @property
    def ignore_index(self) -> int: ...
    @property
    def output_stride(self) -> int: ...


def cct_objective(
    head: CCTDecoders,
    z_l: Tensor,
    targets: Tensor,
    z_u: Tensor | None = None,
    *,
    consistency_weight: float | Tensor = 1.0,
    step: int | None = None,
    ce_threshold: float | Tensor | None = None,
    weak_targets: Tensor | None = None,
    weak_weight: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
    cross_view: CrossViewInputs | None = None,
) -> dict[str, Tensor]:
    """The step's losses from the encoded batches: ``z_l`` (B_l, D, h, w) with ``targets`` (B_l, H, W)
    (long, ``head.ignore_index`` = void), and ``z_u`` (B_u, D, h', w') or ``None`` (supervised step).

    Lu is computed whenever ``z_u`` is given, even at ``consistency_weight=0``, so that every parameter
    takes part in every step (DDP). ``step``: the 0-based training step, for the supervised loss's
    schedule (ab-CE's threshold); ``ce_threshold`` instead: ab-CE at that threshold, whatever the head's
    supervised loss. ``weak_targets`` (B_u, H', W'): pseudo-labels of the unlabeled images.

    ``cross_view`` (cross-view CCT, :mod:`.crossview`): ``z_u`` is the strong view's features; the target
    of Lu (and the guide of the prediction-driven perturbations) is the main decoder's prediction on
    ``cross_view.z_weak`` mixed with the CutMix boxes, confidence-masked with ``cross_view.confidence``
    (instead of ``head.consistency_term.confidence``); with ``cross_view.strong_weight`` the main decoder
    on ``z_u`` also learns its pseudo-label (``loss_strong``). With no auxiliary decoders only that term
    learns from ``z_u`` (the FixMatch-style baseline). ``weak_targets`` must then be mixed like the strong images.

    Returns:
        ``loss`` (with its graph); ``loss_sup``, ``loss_unsup``, ``loss_weak`` (0-d, detached, the
        unweighted terms, 0 when absent); ``logits`` (labeled main logits at the targets' size, detached);
        with ``cross_view`` also ``loss_strong`` (0 when the main decoder does not learn from the strong
        view) and ``confident`` (the share of target pixels at or above the confidence threshold).
    """
    if targets.dim() == 4 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.dim() != 3 or targets.shape[0] != z_l.shape[0]:
        raise ValueError(
            f"targets must be (B, H, W) for a labeled batch of {z_l.shape[0]}, got {tuple(targets.shape)}"
        )
    # 1. Ls on the labeled batch (the main logits fitted to the masks: a crop not divisible by the output
    #    stride gives larger logits, whose extra rows are cropped, never resized onto the masks).
    logits_l = fit_logits(head.main_decoder(z_l), targets.shape[-2:], stride=head.output_stride)
    loss_sup = head.supervised_term(logits_l, targets.long(), step=step, threshold=ce_threshold)
    loss_unsup = loss_weak = loss_sup.new_zeros(())
    if z_u is not None and cross_view is not None:
        return _cross_view_objective(
            head,
            logits_l,
            loss_sup,
            z_u,
            cross_view,
            consistency_weight=consistency_weight,
            weak_targets=weak_targets,
            weak_weight=weak_weight,
            generator=generator,
        )
    if z_u is not None and len(head.aux_decoders) > 0:
        # 2. The main prediction on the unlabeled features: a constant, the target of Lu and the guide
        #    of the prediction-driven perturbations. Lu never trains the main decoder.
        with torch.no_grad():
            main_u = head.main_decoder(z_u)
        # 3-4. The K perturbations of z_u, each through its auxiliary decoder, against main_u.
        loss_unsup, loss_weak = unsupervised_losses(
            list(head.aux_decoders),
            perturb_features(head, z_u, main_u, generator),
            main_u,
            head.consistency_term,
            weak_targets=weak_targets,
            ignore_index=head.ignore_index,
            stride=head.output_stride,
        )
    # 5. The weighted sum.
    return {
        "loss": total_loss(loss_sup, loss_unsup, loss_weak, consistency_weight, weak_weight),
        "loss_sup": loss_sup.detach(),
        "loss_unsup": loss_unsup.detach(),
        "loss_weak": loss_weak.detach(),
        "logits": logits_l.detach(),
    }


def _cross_view_objective(
    head: CCTDecoders,
    logits_l: Tensor,
    loss_sup: Tensor,
    z_s: Tensor,
    cross_view: CrossViewInputs,
    *,
    consistency_weight: float | Tensor,
    weak_targets: Tensor | None,
    weak_weight: float | Tensor,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Steps 2-5 of a cross-view step (see :func:`cct_objective`), from the strong view's features ``z_s``."""
    loss_unsup, loss_weak, target_image = _cross_view_lu(head, z_s, cross_view, weak_targets, generator)
    loss = total_loss(loss_sup, loss_unsup, loss_weak, consistency_weight, weak_weight)
    if cross_view.strong_weight is not None:
        # The main decoder on the strong view learns the weak view's hard pseudo-label (FixMatch).
        logits_s = fit_logits(head.main_decoder(z_s), cross_view.size, stride=head.output_stride)
        loss_strong, confident = strong_view_loss(logits_s, target_image, cross_view.confidence)
        loss = loss + cross_view.strong_weight * loss_strong
    else:
        loss_strong = loss_sup.new_zeros(())
        with torch.no_grad():
            top = torch.softmax(target_image.float(), dim=1).amax(dim=1)
            threshold = 0.0 if cross_view.confidence is None else float(cross_view.confidence)
            confident = (top >= threshold).float().mean()
    return {
        "loss": loss,
        "loss_sup": loss_sup.detach(),
        "loss_unsup": loss_unsup.detach(),
        "loss_weak": loss_weak.detach(),
        "loss_strong": loss_strong.detach(),
        "confident": confident.detach(),
        "logits": logits_l.detach(),
    }


def _cross_view_lu(
    head: CCTDecoders,
    z_s: Tensor,
    cross_view: CrossViewInputs,
    weak_targets: Tensor | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 2-4 of a cross-view step: ``(Lu, Lw, the strong view's pseudo-label logits (B_u, C, H, W))``."""
    main_w = None
    if cross_view.aux_on_weak:
        # The paper's CCT on the weak view: its own main prediction (a constant, unmixed) is the target of
        # the K perturbations of z_weak, by the head's consistency term; mixed, it is the strong view's label.
        with torch.no_grad():
            main_w = head.main_decoder(cross_view.z_weak)
    # 2. The weak view's target, mixed like the strong images: a constant.
    target, target_image = weak_view_target(head.main_decoder, cross_view, head.output_stride, main_w)
    zero = z_s.new_zeros((), dtype=torch.float32)
    if len(head.aux_decoders) == 0:
        return zero, zero, target_image
    if main_w is not None:
        features, aux_target, term = cross_view.z_weak, main_w, head.consistency_term
    else:
        # 3-4. CCT's perturbations of the strong features, each through its auxiliary decoder, against the
        #      weak view's target: the paper's Lu code path (fused or not) with the target's threshold.
        features, aux_target = z_s, target
        term = head.consistency_term.with_confidence(cross_view.confidence)
    loss_unsup, loss_weak = unsupervised_losses(
        list(head.aux_decoders),
        perturb_features(head, features, aux_target, generator),
        aux_target,
        term,
        weak_targets=weak_targets,
        ignore_index=head.ignore_index,
        stride=head.output_stride,
    )
    return loss_unsup, loss_weak, target_image


def resize_logits(logits: Tensor, size: Sequence[int]) -> Tensor:
    """``(B, C, h, w) -> (B, C, *size)``, bilinear; the same tensor when the size already matches.

    A genuine resize only: logits predicted from an image (or its labels' size) go through
    :func:`~cct_train.common.logits.fit_logits`, which crops the padding of the last feature cell.
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def perturb_features(
    head: CCTDecoders, z_u: Tensor, main_u: Tensor, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Each auxiliary decoder's perturbation of ``z_u`` (B_u, D, h, w): K tensors of that shape, in order.

    A perturbation's ``inputs`` says what it reads: the features alone (noise, dropout), the features and
    ``main_u`` (B_u, C, H, W), the main logits (object / context masks, guided cutout), or its own auxiliary
    decoder (VAT). VAT's target is that decoder's own clean prediction (standard VAT, the default) or, with
    ``target="main"``, ``main_u``; with a fused consistency term its power iteration runs on the decoder as GEMMs
    in sub-pixel order (:class:`~cct_train.objectives.fused.SubPixelRows`: the same decoder and parameters,
    the same direction, since its loss is a sum over pixels).
    """
    outputs: list[Tensor] = []
    rows_target: Tensor | None = None  # main_u in sub-pixel order, computed once per step
    for pert, dec in zip(head.perturbations, head.aux_decoders, strict=True):
        kind = getattr(pert, "inputs", "features")
        if kind == "features":
            z_p = pert(z_u, generator=generator)
        elif kind == "prediction":
            z_p = pert(z_u, main_u, generator=generator)
        elif kind == "decoder" and head.consistency_term.fused and is_subpixel_decoder(dec):
            rows = SubPixelRows(dec)  # type: ignore[arg-type]
            if getattr(pert, "target", "main") == "main":  # it reads main_u: give it in the same order
                if rows_target is None:
                    rows_target = rows.target(main_u)
                z_p = pert(z_u, rows, rows_target, generator=generator)
            else:
                z_p = pert(z_u, rows, generator=generator)
        elif kind == "decoder":
            z_p = pert(z_u, dec, main_u, generator=generator)
        else:
            raise ValueError(f"perturbation {type(pert).__name__} has unknown inputs {kind!r}")
        outputs.append(z_p)
    return outputs


def unsupervised_losses(
    aux_decoders: Sequence[nn.Module],
    perturbed: Sequence[Tensor],
    main_u: Tensor,
    consistency: ConsistencyTerm,
    *,
    weak_targets: Tensor | None = None,
    ignore_index: int = 255,
    stride: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(Lu, Lw)`` of the K auxiliary decoders on their perturbed features ``perturbed`` (K x (B, D, h, w)).

    ``main_u``: the main decoder's logits on the same unlabeled features, a constant (computed without a
    graph): Lu trains the encoder and the auxiliary decoders, never the main decoder. Lu is the
    ``consistency`` term (:class:`~.losses.ConsistencyTerm`: its kind, its confidence mask, fused when it
    applies) averaged over the K decoders, at their native resolution. Lw (``weak_targets`` (B, H', W'),
    paper 3.3) is ``cct_losses.weak_label_loss`` of the auxiliary outputs fitted to the pseudo-labels
    (:func:`~cct_train.common.logits.fit_logits` with ``stride``, the encoder's output stride; default the
    decoders' upsampling factor), 0 without weak targets. Lw needs the K outputs: with weak targets Lu is
    computed from them (the plain path).
    """
    zero = main_u.new_zeros((), dtype=torch.float32)
    if weak_targets is None:
        return consistency(aux_decoders, perturbed, main_u), zero
    aux_outputs = [dec(z_p) for dec, z_p in zip(aux_decoders, perturbed, strict=True)]
    loss_unsup = consistency.plain_loss(aux_outputs, main_u)
    if weak_targets.dim() == 4 and weak_targets.shape[1] == 1:
        weak_targets = weak_targets[:, 0]
    if stride is None:
        stride = max(1, aux_outputs[0].shape[-2] // perturbed[0].shape[-2])
    # Cropped (not resized, as weak_label_loss would) where the image is not a multiple of the stride.
    size = weak_targets.shape[-2:]
    fitted = [fit_logits(a, size, stride=stride) for a in aux_outputs]
    return loss_unsup, weak_label_loss(fitted, weak_targets.long(), ignore_index=ignore_index)


def total_loss(
    loss_sup: Tensor,
    loss_unsup: Tensor,
    loss_weak: Tensor,
    consistency_weight: float | Tensor = 1.0,
    weak_weight: float | Tensor = 0.0,
) -> Tensor:
    """L = Ls + w_u Lu + w_w Lw (paper eq. 4, with the weak-label term of 3.3).

    >>> round(float(total_loss(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(2.0), 30.0, 0.4)), 4)
    16.8
    """
    return loss_sup + consistency_weight * loss_unsup + weak_weight * loss_weak
