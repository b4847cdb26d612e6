"""Multi-domain CCT (paper 3.4): one shared encoder, a main decoder and auxiliary decoders per domain.

Several data sets with their own label spaces (overlapping, e.g. Cityscapes + CamVid, or disjoint, e.g.
Cityscapes + SUN RGB-D) train one network. The encoder ``h`` (backbone + PSP) is shared; each domain ``d``
has its own head: a main decoder ``g_d`` over its ``C_d`` classes and its ``K_d`` perturbed auxiliary
decoders. A step's loss for domain ``d`` is the single-domain CCT loss ``Ls_d + w_u Lu_d (+ w_w Lw_d)``
computed on that domain's labeled and unlabeled batch; it trains the shared encoder and that domain's
decoders only.

Each head is a :class:`~cct_train.models.cct.CCTModel` over features (its encoder is an identity on ``z``), so
the losses, the fused auxiliary decoders and the perturbations are exactly those of the single-domain model.

Example::

    model = MultiDomainCCT("timm:resnet18", {"camvid": {"num_classes": 11}, "horses": {"num_classes": 2}})
    logits = model(images, domain="horses")                       # (B, 2, H, W)
    out = model(batches={"camvid": {"images": x, "targets": y, "unlabeled": u, "consistency_weight": w}})
    out["loss"].backward()
    camvid_model = model.export_domain("camvid")                  # a plain CCTModel
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cct_train.common.logits import fit_logits
from cct_train.models.batch import TrainBatch, batch_objective
from cct_train.models.cct import (
    CCTModel,
    build_feature_extractor,
    rebuild_arguments,
    recorded_arguments,
)
from cct_train.models.encoders import Encoder, resolve_normalization

__all__ = ["DomainModel", "MultiDomainCCT"]

#: Per-domain keys of ``MultiDomainCCT(domains={name: {...}})``.
DOMAIN_KEYS = ("num_classes", "perturbations", "background", "perturbation_kwargs", "ignore_index")

#: The per-domain outputs of a cross-view step besides the losses.
_CROSS_VIEW_OUTPUTS = ("confident",)


class MultiDomainCCT(nn.Module):
    """A shared encoder + PSP and one CCT head per domain.

    Args:
        encoder: an encoder name for :func:`~cct_train.models.encoders.build_encoder` or a module (as
            :class:`~cct_train.models.cct.CCTModel`).
        domains: ``{name: {"num_classes": C, "perturbations": {name: K} | None, "background": [...],
            "perturbation_kwargs": {...}, "ignore_index": void}}``, in order; ``perturbations`` ``None`` = the
            paper's 30, ``{}`` = a supervised head; ``ignore_index`` left out: the shared one.
        psp_channels, psp_bins, output_stride, pretrained, weights, in_channels, encoder_kwargs, mean, std:
            the shared encoder and its input normalisation, as for ``CCTModel``.
        consistency, confidence, ignore_index, min_kept, decoder_final_relu, decoder_hidden_relu: the heads' settings, as for ``CCTModel``.
        supervised_loss, abce_ramp, abce_iterations: the heads' supervised loss, as for ``CCTModel`` (ab-CE's
            threshold starts at 1/C of each domain's label space).
        concat_batches: encode every image of a step (all domains, labeled and unlabeled) in one backbone
            pass when their shapes match.

    Attributes:
        encoder, psp: shared; ``heads``: ``nn.ModuleDict`` name -> ``CCTModel`` over features;
        ``domain_names``; ``config`` (JSON-friendly, for checkpoints and :meth:`from_config`).
    """

    def __init__(
        self,
        encoder: str | nn.Module = "timm:resnet50",
        domains: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        psp_channels: int | None = 512,
        psp_bins: Sequence[int] = (1, 2, 3, 6),
        output_stride: int = 8,
        pretrained: bool = False,
        weights: str | Path | None = None,
        in_channels: int = 3,
        consistency: str = "mse",
        confidence: float | None = None,
        ignore_index: int = 255,
        min_kept: int = 1,
        supervised_loss: str = "ce",
        abce_ramp: float = 0.4,
        abce_iterations: int | None = None,
        concat_batches: bool = True,
        decoder_final_relu: bool = False,
        decoder_hidden_relu: bool = True,
        encoder_kwargs: Mapping[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not domains:
            raise ValueError("domains must name at least one domain: {name: {'num_classes': C, ...}}")
        specs: dict[str, dict[str, Any]] = {}
        for name, spec in domains.items():
            unknown = sorted(set(spec) - set(DOMAIN_KEYS))
            if unknown:
                raise ValueError(f"domain {name!r}: unknown keys {unknown}; known: {list(DOMAIN_KEYS)}")
            if "num_classes" not in spec:
                raise ValueError(f"domain {name!r}: num_classes is required")
            specs[str(name)] = dict(spec)
        mean, std = resolve_normalization(encoder, mean, std)
        self.config: dict[str, Any] = recorded_arguments(
            MultiDomainCCT.__init__, locals(), domains=specs, mean=mean, std=std
        )
        self.concat_batches = bool(concat_batches)
        self.encoder, self.psp, z_channels = build_feature_extractor(
            encoder,
            in_channels=in_channels,
            output_stride=output_stride,
            pretrained=pretrained,
            weights=weights,
            psp_channels=psp_channels,
            psp_bins=psp_bins,
            encoder_kwargs=encoder_kwargs,
        )
        self.output_stride = self.encoder.output_stride
        self.z_channels = z_channels
        # Each head sees z as its "image": an identity encoder with z's channels and the real stride, so
        # its decoders upsample by the backbone's stride and its losses are CCTModel's own.
        self.heads = nn.ModuleDict(
            {
                name: CCTModel(
                    Encoder(
                        nn.Identity(),
                        name="shared",
                        out_channels=z_channels,
                        output_stride=self.output_stride,
                    ),
                    int(spec["num_classes"]),
                    perturbations=spec.get("perturbations"),
                    psp_channels=None,
                    background=spec.get("background", (0,)),
                    perturbation_kwargs=spec.get("perturbation_kwargs"),
                    consistency=consistency,
                    confidence=confidence,
                    ignore_index=spec.get("ignore_index", ignore_index),
                    min_kept=min_kept,
                    supervised_loss=supervised_loss,
                    abce_ramp=abce_ramp,
                    abce_iterations=abce_iterations,
                    concat_batches=False,
                    decoder_final_relu=decoder_final_relu,
                    decoder_hidden_relu=decoder_hidden_relu,
                )
                for name, spec in specs.items()
            }
        )

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def domain_names(self) -> list[str]:
        return list(self.heads.keys())

    def head(self, domain: str) -> CCTModel:
        """The head (main + auxiliary decoders) of ``domain``; a clear error for an unknown name."""
        if domain not in self.heads:
            raise KeyError(f"unknown domain {domain!r}; this model has {self.domain_names}")
        head = self.heads[domain]
        assert isinstance(head, CCTModel)
        return head

    def num_classes(self, domain: str) -> int:
        return self.head(domain).num_classes

    def encode(self, images: Tensor) -> Tensor:
        """The shared ``h(x)``: ``(B, in_channels, H, W) -> (B, z_channels, H / os, W / os)``."""
        z: Tensor = self.psp(self.encoder(images))
        return z

    def predict(self, images: Tensor, domain: str) -> Tensor:
        """Main-path logits of ``domain`` at the input size: ``(B, in_channels, H, W) -> (B, C_d, H, W)``
        (the padding of the last feature cell cropped, as :meth:`CCTModel.predict`)."""
        head = self.head(domain)
        return fit_logits(
            head.main_decoder(self.encode(images)), images.shape[-2:], stride=self.output_stride
        )

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the input normalisation (shared by every domain)."""
        return tuple(self.config["mean"]), tuple(self.config["std"])

    def param_groups(
        self, lr: float, backbone_lr_factor: float = 0.1, weight_decay: float = 1e-4
    ) -> list[dict[str, Any]]:
        """The backbone at ``lr * backbone_lr_factor``; the shared PSP and every head at ``lr``."""
        return CCTModel.param_groups(self, lr, backbone_lr_factor, weight_decay)  # type: ignore[arg-type]

    def export_domain(self, domain: str) -> CCTModel:
        """A standalone single-domain :class:`CCTModel` (shared encoder + PSP + that head), weights copied.

        What `cct export --domain` writes; `cct eval` / `cct predict` use it like any single-domain model.
        """
        head = self.head(domain)
        cfg = dict(head.config)
        cfg.update(
            encoder=self.config["encoder"],
            psp_channels=self.config["psp_channels"],
            psp_bins=self.config["psp_bins"],
            output_stride=self.config["output_stride"],
            in_channels=self.config["in_channels"],
            encoder_kwargs=self.config["encoder_kwargs"],
            concat_batches=self.config["concat_batches"],
            mean=self.config["mean"],
            std=self.config["std"],
        )
        encoder = copy.deepcopy(self.encoder) if self.config["encoder"] is None else None
        single = CCTModel.from_config(cfg, encoder=encoder)
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"psp.{k}": v for k, v in self.psp.state_dict().items()})
        state.update(head.state_dict())
        single.load_state_dict(state)
        return single

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        encoder: nn.Module | None = None,
        load_weights: bool = False,
        **overrides: Any,
    ) -> MultiDomainCCT:
        """Rebuild from :attr:`config` (e.g. a checkpoint's), without the initial backbone weights unless
        ``load_weights`` (see ``CCTModel.from_config``)."""
        return cls(**rebuild_arguments(config, encoder=encoder, load_weights=load_weights, **overrides))

    # ------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        images: Tensor | None = None,
        *,
        domain: str | None = None,
        batches: Mapping[str, TrainBatch | Mapping[str, Any]] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Inference of one domain, or one training step over one or several domains.

        Inference: ``forward(images (B, 3, H, W), domain=name) -> (B, C_d, H, W)`` logits.

        Training: ``forward(batches={name: inputs})``; ``inputs`` is a
        :class:`~cct_train.models.batch.TrainBatch` or a mapping of its fields: ``images`` ``(B_l, 3, H, W)``,
        ``targets`` ``(B_l, H, W)`` and optionally ``unlabeled`` ``(B_u, 3, H', W')``, ``consistency_weight``,
        ``step``, ``ce_threshold``, ``weak_targets``, ``weak_weight``, and for cross-view CCT ``strong``,
        ``cutmix_box``, ``cutmix_partner``, ``target_confidence``, ``strong_weight`` (as
        ``CCTModel.forward``) and ``loss_weight`` (default 1). Every image of the step goes through the
        shared encoder in one pass when shapes allow (the weak views in a pass of their own, without a graph).

        Returns:
            ``loss`` = sum over the domains of ``loss_weight * L_d``; ``loss_sup`` / ``loss_unsup`` /
            ``loss_weak`` (and cross-view ``loss_strong``) summed over domains (unweighted terms), cross-view
            ``confident`` averaged over them; and per domain ``"<name>/loss"``, ``"<name>/loss_sup"``,
            ``"<name>/loss_unsup"``, ``"<name>/loss_weak"`` (``"<name>/loss_strong"``,
            ``"<name>/confident"``) (all detached but ``loss``).
        """
        if batches is None:
            if images is None or domain is None:
                raise ValueError(
                    "inference needs images and domain=NAME; training needs batches={name: {...}}"
                )
            return self.predict(images, domain)
        if images is not None:
            raise ValueError("pass the training images inside batches={name: {'images': ...}}")
        if not batches:
            raise ValueError("batches is empty: give at least one domain's inputs")
        checked = {name: self._checked_batch(name, inputs) for name, inputs in batches.items()}
        features = self._encode_all(checked)
        total: Tensor | None = None
        out: dict[str, Tensor] = {}
        for name, batch in checked.items():
            head_out = batch_objective(self.head(name), batch, *features[name], generator)
            weighted = head_out["loss"] * float(batch.loss_weight)
            total = weighted if total is None else total + weighted
            _add_domain_outputs(out, name, head_out)
        assert total is not None
        out["loss"] = total
        shares = [out[f"{name}/confident"] for name in checked if f"{name}/confident" in out]
        if shares:
            out["confident"] = torch.stack(shares).mean()
        return out

    def _checked_batch(self, name: str, inputs: TrainBatch | Mapping[str, Any]) -> TrainBatch:
        """``inputs`` of domain ``name`` as a batch; a clear error for an unknown domain, unknown keys or a
        strong view without its weak view."""
        self.head(name)
        batch = TrainBatch.of(inputs, where=f"batches[{name!r}]")
        strong, weak = batch.strong, batch.unlabeled
        if strong is not None and (weak is None or strong.shape != weak.shape):
            raise ValueError(
                f"batches[{name!r}]: 'strong' needs the weak view of the same images as 'unlabeled', "
                "of the same shape"
            )
        return batch

    def _encode_all(
        self, batches: Mapping[str, TrainBatch]
    ) -> dict[str, tuple[Tensor, Tensor | None, Tensor | None]]:
        """``{name: (z_l, z_u | None, z_w | None)}``: one encoder pass per distinct image shape (one in all
        when the crops match and ``concat_batches``), so BatchNorm sees the whole step at once. Cross-view
        (``strong`` given): ``z_u`` is the strong view's, and ``z_w`` the weak view's, encoded first and
        without a graph, every domain's weak views together when their shapes match."""
        parts: list[tuple[str, str, Tensor]] = []
        weak_parts: list[tuple[str, str, Tensor]] = []
        for name, batch in batches.items():
            parts.append((name, "l", batch.images))
            if batch.strong is not None and batch.unlabeled is not None:
                parts.append((name, "u", batch.strong))
                # With the auxiliary decoders on the weak view, Lu trains the encoder through it: a graph.
                on_weak = batch.aux_on_weak and self.head(name).num_aux_decoders > 0
                (parts if on_weak else weak_parts).append((name, "w", batch.unlabeled))
            elif batch.unlabeled is not None and self.head(name).num_aux_decoders > 0:
                parts.append((name, "u", batch.unlabeled))
        encoded: dict[tuple[str, str], Tensor] = {}
        if weak_parts:
            with torch.no_grad():  # the targets' views: constants
                encoded.update(self._encode_parts(weak_parts))
        encoded.update(self._encode_parts(parts))
        return {
            name: (encoded[(name, "l")], encoded.get((name, "u")), encoded.get((name, "w")))
            for name in batches
        }

    def _encode_parts(self, parts: list[tuple[str, str, Tensor]]) -> dict[tuple[str, str], Tensor]:
        """``{(name, kind): h(images)}`` of ``parts`` ``(name, kind, images)``, grouped by shape when
        ``concat_batches``."""
        encoded: dict[tuple[str, str], Tensor] = {}
        if self.concat_batches:
            groups: dict[tuple[int, ...], list[tuple[str, str, Tensor]]] = {}
            for part in parts:
                groups.setdefault(tuple(part[2].shape[1:]), []).append(part)
            for group in groups.values():
                z = self.encode(torch.cat([t for _, _, t in group], dim=0))
                sizes = [t.shape[0] for _, _, t in group]
                for (name, kind, _), chunk in zip(group, z.split(sizes, dim=0), strict=True):
                    encoded[(name, kind)] = chunk
        else:
            encoded = {(name, kind): self.encode(t) for name, kind, t in parts}
        return encoded


def _add_domain_outputs(out: dict[str, Tensor], name: str, head_out: Mapping[str, Tensor]) -> None:
    """Add one domain's outputs to the step's ``out``: its detached loss and terms under ``"<name>/..."``,
    and its terms to the sums over domains."""
    out[f"{name}/loss"] = head_out["loss"].detach()
    for key in ("loss_sup", "loss_unsup", "loss_weak", "loss_strong"):
        if key in head_out:
            out[f"{name}/{key}"] = head_out[key]
            out[key] = head_out[key] if key not in out else out[key] + head_out[key]
    for key in _CROSS_VIEW_OUTPUTS:
        if key in head_out:
            out[f"{name}/{key}"] = head_out[key]


class DomainModel(nn.Module):
    """One domain's main path: ``forward(images) -> (B, C_d, H, W)`` logits.

    Wraps a :class:`MultiDomainCCT`, or a wrapper of one whose forward takes ``(images, domain=...)``
    (DDP: evaluating through it keeps its buffer broadcast, so every process sees the same BatchNorm
    statistics). Shares the parameters (no copy), so evaluation code written for a single-domain model
    works unchanged.
    """

    def __init__(self, model: nn.Module, domain: str, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.domain = domain
        self.num_classes = int(num_classes)

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.model(images, domain=self.domain)
        return logits
