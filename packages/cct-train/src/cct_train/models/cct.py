"""The CCT model: a shared encoder, a main decoder and perturbed auxiliary decoders (Ouali et al., CVPR 2020).

``f = g(h(x))``: the encoder ``h`` is a backbone (:func:`cct_train.models.encoders.build_encoder`) plus a
:class:`PSPModule`; ``z = h(x)`` is ``(B, psp_channels, H / os, W / os)``. The main decoder ``g`` and the K
auxiliary decoders ``g_k`` are :class:`UpsampleDecoder` s. Each auxiliary decoder sees its own perturbation
``p_k(z_u)`` of the UNLABELED features and is trained to agree with the (detached) main prediction.

Example::

    model = CCTModel("timm:resnet18", num_classes=11)            # the paper's 30 auxiliary decoders
    logits = model(images)                                         # inference: (B, C, H, W)
    out = model(images, targets, unlabeled, consistency_weight=w)  # training: dict of losses
    out["loss"].backward()
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from cct_perturb import PAPER_DECODERS, PERTURBATIONS, Perturbation, create_perturbation
from cct_train.common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cct_train.common.limits import MAX_AUX_DECODERS
from cct_train.common.logits import fit_logits
from cct_train.models.batch import TrainBatch, batch_objective
from cct_train.models.decoders import PSPModule, SubPixelBlock, UpsampleDecoder, icnr_
from cct_train.models.encoders import (
    Encoder,
    build_encoder,
    resolve_normalization,
)
from cct_train.objectives.losses import ConsistencyTerm, SupervisedTerm

__all__ = [
    "DEFAULT_PERTURBATIONS",
    "CCTModel",
    "PSPModule",
    "SubPixelBlock",
    "UpsampleDecoder",
    "icnr_",
]

#: The paper's final "CCT" setting, 30 auxiliary decoders in this (stable) order: cct_perturb's
#: PAPER_DECODERS (the one source), under the name this module has always exported.
DEFAULT_PERTURBATIONS: dict[str, int] = PAPER_DECODERS


def jsonable(value: Any) -> Any:
    """Tuples -> lists, Paths -> str, mappings -> dicts (for a JSON / YAML-friendly ``config``)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _as_encoder(module: nn.Module, in_channels: int) -> Encoder:
    """Wrap a user module as an :class:`Encoder` (probing ``out_channels`` / ``output_stride`` if missing)."""
    if isinstance(module, Encoder):
        return module
    channels: Any = getattr(module, "out_channels", None)
    stride: Any = getattr(module, "output_stride", None)
    if isinstance(channels, (list, tuple)):
        channels = channels[-1]
    if not isinstance(channels, int) or not isinstance(stride, int):
        probe = Encoder(module, name=type(module).__name__, out_channels=0, output_stride=1)
        was_training = module.training
        module.eval()
        size = 64
        try:
            with torch.no_grad():
                param = next(module.parameters(), None)
                device = param.device if param is not None else torch.device("cpu")
                out = probe(torch.zeros(1, in_channels, size, size, device=device))
        finally:
            module.train(was_training)
        channels = int(out.shape[1])
        stride = size // int(out.shape[-1])
    return Encoder(module, name=type(module).__name__, out_channels=int(channels), output_stride=int(stride))


def build_feature_extractor(
    encoder: str | nn.Module,
    *,
    in_channels: int,
    output_stride: int,
    pretrained: bool,
    weights: str | Path | None,
    psp_channels: int | None,
    psp_bins: Sequence[int],
    encoder_kwargs: Mapping[str, Any] | None,
) -> tuple[Encoder, nn.Module, int]:
    """The encoder ``h`` = backbone + PSP: ``(backbone, psp, z_channels)`` (``psp`` an identity when
    ``psp_channels`` is None). Shared by :class:`CCTModel` and the multi-domain model."""
    if isinstance(encoder, str):
        backbone = build_encoder(
            encoder,
            in_channels=in_channels,
            output_stride=output_stride,
            pretrained=pretrained,
            weights=weights,
            **dict(encoder_kwargs or {}),
        )
    else:
        backbone = _as_encoder(encoder, in_channels)
    if psp_channels is None:
        return backbone, nn.Identity(), backbone.out_channels
    return backbone, PSPModule(backbone.out_channels, psp_channels, psp_bins), int(psp_channels)


def rebuild_arguments(
    config: Mapping[str, Any], *, encoder: nn.Module | None, load_weights: bool, **overrides: Any
) -> dict[str, Any]:
    """Constructor arguments from a stored model ``config``: without the initial backbone weights unless
    ``load_weights`` (a checkpoint's state dict replaces them, and this works offline)."""
    cfg = {**dict(config), **overrides}
    if not load_weights:
        cfg["pretrained"] = False
        cfg["weights"] = None
    if "mean" not in cfg:  # saved before the normalisation was stored: those models used ImageNet's
        cfg["mean"], cfg["std"] = IMAGENET_MEAN, IMAGENET_STD
    if encoder is not None:
        cfg["encoder"] = encoder
    elif cfg.get("encoder") is None:
        raise ValueError(
            "this config was built from an encoder module: pass it as from_config(..., encoder=)"
        )
    return cfg


def checked_perturbations(
    perturbations: Mapping[str, int] | None, perturbation_kwargs: Mapping[str, Mapping[str, Any]] | None
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """``({name: K}, {name: kwargs})`` with every name in the cct_perturb registry (a close match
    suggested) and every K an int >= 0; ``None`` perturbations: the paper's 30."""
    spec = dict(DEFAULT_PERTURBATIONS if perturbations is None else perturbations)
    pkwargs = {str(k): dict(v) for k, v in (perturbation_kwargs or {}).items()}
    for name in [*spec, *pkwargs]:
        if name not in PERTURBATIONS:
            close = difflib.get_close_matches(name, list(PERTURBATIONS), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"Unknown perturbation {name!r}.{hint} Known: {sorted(PERTURBATIONS)}")
    for name, count in spec.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"perturbations[{name!r}] must be an int >= 0, got {count!r}")
    if sum(spec.values()) > MAX_AUX_DECODERS:
        raise ValueError(
            f"perturbations ask for {sum(spec.values())} auxiliary decoders; at most {MAX_AUX_DECODERS} "
            "are built (the paper's CCT uses 30)"
        )
    return spec, pkwargs


def auxiliary_branches(
    spec: Mapping[str, int],
    perturbation_kwargs: Mapping[str, Mapping[str, Any]],
    background: tuple[int, ...],
    decoder: Callable[[], nn.Module],
    stride: float | None = None,
) -> tuple[list[str], list[nn.Module], list[nn.Module]]:
    """``(names, perturbations, decoders)``: K_name perturbation + fresh decoder pairs per entry of
    ``spec``, in its order; ``background`` and z's output ``stride`` (G-Cutout's minimum region is in
    input pixels at that stride) go to the perturbations that take them unless set."""
    names: list[str] = []
    perts: list[nn.Module] = []
    decoders: list[nn.Module] = []
    for name, count in spec.items():
        kwargs = dict(perturbation_kwargs.get(name, {}))
        accepted = inspect.signature(PERTURBATIONS[name]).parameters
        if "background" in accepted:
            kwargs.setdefault("background", background)
        if stride is not None and "stride" in accepted:
            kwargs.setdefault("stride", stride)
        for _ in range(count):
            perts.append(create_perturbation(name, **kwargs))
            decoders.append(decoder())
            names.append(name)
    return names, perts, decoders


def recorded_arguments(
    init: Callable[..., None], arguments: Mapping[str, Any], **resolved: Any
) -> dict[str, Any]:
    """A model's ``config``: the arguments of its constructor ``init`` (read by name from ``arguments``,
    its ``locals()``), with the ``resolved`` values in place of the ones given, JSON-friendly.

    Read off the signature so that a new constructor argument is recorded (and rebuilt by
    ``from_config``) without a list kept by hand; an encoder module is recorded as ``None`` (it must be
    passed again to ``from_config``).
    """
    names = [name for name in inspect.signature(init).parameters if name != "self"]
    config = {name: resolved[name] if name in resolved else arguments[name] for name in names}
    config["encoder"] = config["encoder"] if isinstance(config["encoder"], str) else None
    config["encoder_kwargs"] = dict(config.get("encoder_kwargs") or {})
    recorded: dict[str, Any] = jsonable(config)
    return recorded


class CCTModel(nn.Module):
    """Cross-Consistency Training model (segmentation-models-pytorch style constructor).

    Args:
        encoder: an encoder name for :func:`~cct_train.models.encoders.build_encoder` (``"timm:resnet50"``,
            ``"smp:resnet50"``, a bare timm name), or an already-built ``nn.Module`` returning
            ``(B, D, h, w)`` (or a list of maps, the last one used; ``out_channels`` / ``output_stride``
            attributes are read, or probed with a 64x64 dummy input). A module passed in is shared, not
            copied (several models can share one backbone, e.g. for multiple domains).
        num_classes: ``C``.
        perturbations: ``{name: K}`` auxiliary decoders per perturbation (names of
            ``cct_perturb.PERTURBATIONS``), built in the mapping's order. ``None``: the paper's 30
            (:data:`DEFAULT_PERTURBATIONS`); ``{}``: the supervised baseline, no auxiliary decoder.
        psp_channels: channels of the PSP output ``z`` (512 in the original). ``None``: no PSP module,
            ``z`` is the backbone's map.
        psp_bins: pooling bins of the PSP module.
        output_stride: wanted backbone stride (8 in the paper); ``model.output_stride`` is the one obtained
            and sets the decoders' upsampling (log2(os) sub-pixel blocks).
        pretrained: the library's online ImageNet weights (needs network access).
        weights: a local backbone state dict (``.pth`` / ``.safetensors``).
        in_channels: image channels.
        background: background class indices, given to the perturbations that take ``background``
            (object_mask, context_mask, guided_cutout) unless ``perturbation_kwargs`` sets it.
        perturbation_kwargs: per-name constructor arguments, e.g. ``{"vat": {"eps": 1.0}}``;
            ``{"vat": {"target": "main"}}`` makes VAT's target the main prediction instead of the auxiliary
            decoder's own (standard VAT, the default since cct-train 0.2).
        consistency: ``"mse"`` (paper), ``"kl"`` or ``"js"``.
        confidence: leave out of Lu the unlabeled pixels whose main max-probability is below this
            (the original code's confidence masking: off in its configs, threshold 0.5 when on); ``None``
            (default, the paper): every pixel.
        ignore_index: label of void pixels (targets and weak targets).
        min_kept: ab-CE's minimum kept pixels per image.
        supervised_loss: ``"ce"`` (default) or ``"abce"`` (annealed bootstrapped CE, paper 3.1), whose
            threshold anneals from 1/C over ``abce_ramp`` of ``abce_iterations`` (the training's length,
            required with ``"abce"``): the step's threshold is read at ``forward(..., step=)``.
        concat_batches: encode labeled and unlabeled images in ONE batch when their shapes match (one
            backbone pass, and BatchNorm statistics over both; the original code runs two passes).
        decoder_final_relu: keep the ReLU of the decoders' last sub-pixel block as the paper / original do
            (logits >= 0). Default ``False`` (unconstrained logits): with it, fresh decoders often start
            with a class channel dead at every pixel (no gradient); see :class:`UpsampleDecoder`.
        decoder_hidden_relu: the ReLU of the decoders' other sub-pixel blocks (paper: ``True``); ``False``
            gives linear decoders, which cannot lose a channel group to dead ReLUs early in training.
        encoder_kwargs: extra arguments for ``build_encoder`` (e.g. ``{"drop_path_rate": 0.1}``).
        mean, std: the input normalisation the model expects of [0, 1] RGB images (``(x - mean) / std``);
            ``None``: the encoder's pretrained statistics (:func:`~cct_train.models.encoders.input_normalization`,
            ImageNet's for a module). Stored in ``config``, so evaluation, prediction and export normalise
            as training did.

    Attributes:
        encoder: the backbone (:class:`~cct_train.models.encoders.Encoder`), ``psp``, ``main_decoder``,
        ``aux_decoders`` (``nn.ModuleList``), ``perturbations`` (``nn.ModuleList``, aligned with
        ``aux_decoders``), ``aux_names`` (perturbation name per auxiliary decoder), ``config``.

    >>> backbone = torch.nn.Conv2d(3, 16, 3, stride=8, padding=1)  # any module: (B, D, H / 8, W / 8)
    >>> model = CCTModel(backbone, num_classes=4, perturbations={"feature_noise": 1, "vat": 1}, psp_channels=8)
    >>> model.aux_names, model.output_stride
    (['feature_noise', 'vat'], 8)
    >>> images = torch.rand(2, 3, 32, 32)
    >>> model.eval()(images).shape  # inference: the main decoder's logits
    torch.Size([2, 4, 32, 32])
    >>> out = model.train()(images, torch.zeros(2, 32, 32, dtype=torch.long), torch.rand(2, 3, 32, 32), consistency_weight=30.0)
    >>> sorted(out)  # training: L = Ls + w_u Lu (+ w_w Lw) and its terms
    ['logits', 'loss', 'loss_sup', 'loss_unsup', 'loss_weak']
    >>> out["loss"].backward()
    """

    def __init__(
        self,
        encoder: str | nn.Module = "timm:resnet50",
        num_classes: int = 21,
        *,
        perturbations: Mapping[str, int] | None = None,
        psp_channels: int | None = 512,
        psp_bins: Sequence[int] = (1, 2, 3, 6),
        output_stride: int = 8,
        pretrained: bool = False,
        weights: str | Path | None = None,
        in_channels: int = 3,
        background: Sequence[int] | int = (0,),
        perturbation_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
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
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        #: The owners of the two losses (their kinds, thresholds, plain and fused paths): objectives.losses.
        self.supervised_term = SupervisedTerm(
            supervised_loss,
            num_classes,
            abce_iterations,
            abce_ramp,
            ignore_index=int(ignore_index),
            min_kept=int(min_kept),
        )
        self.consistency_term = ConsistencyTerm(consistency, confidence, fused=True, chunk_elements=1 << 21)
        spec, pkwargs = checked_perturbations(perturbations, perturbation_kwargs)
        bg = (background,) if isinstance(background, int) else tuple(int(b) for b in background)
        mean, std = resolve_normalization(encoder, mean, std)

        self.config: dict[str, Any] = recorded_arguments(
            CCTModel.__init__,
            locals(),
            perturbations=spec,
            background=bg,
            perturbation_kwargs=pkwargs,
            mean=mean,
            std=std,
        )
        self.num_classes = int(num_classes)
        self.concat_batches = bool(concat_batches)
        self.background = bg

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
        # log2(os) sub-pixel blocks; a stride that is not a power of two (e.g. ViT/14) gets the nearest one,
        # and the logits are resized to the input size.
        upscale = 1 << max(0, round(math.log2(self.output_stride)))
        self.z_channels = z_channels

        def decoder() -> UpsampleDecoder:
            return UpsampleDecoder(
                z_channels,
                num_classes,
                upscale,
                final_relu=decoder_final_relu,
                hidden_relu=decoder_hidden_relu,
            )

        self.main_decoder = decoder()
        self.aux_names, perts, aux = auxiliary_branches(spec, pkwargs, bg, decoder, stride=self.output_stride)
        self.aux_decoders = nn.ModuleList(aux)
        self.perturbations = nn.ModuleList(perts)

    # ------------------------------------------------------------------------------------------ helpers

    # The loss settings, read from (and, for the fused path's switches, written to) their owners.
    @property
    def consistency(self) -> str:
        """Lu's kind (``consistency_term.kind``)."""
        return self.consistency_term.kind

    @property
    def confidence(self) -> float | None:
        """Lu's confidence threshold (``consistency_term.confidence``)."""
        return self.consistency_term.confidence

    @property
    def fuse_aux_decoders(self) -> bool:
        """Compute Lu through the fused path (``consistency_term.fused``: the K auxiliary decoders as
        batched GEMMs, back-propagated chunk by chunk in the forward pass; same value and gradients, faster
        and without the K full-resolution outputs in memory), whenever there are no weak targets;
        ``False``: one ordinary decoder call per auxiliary decoder."""
        return self.consistency_term.fused

    @fuse_aux_decoders.setter
    def fuse_aux_decoders(self, value: bool) -> None:
        self.consistency_term.fused = bool(value)

    @property
    def aux_chunk_elements(self) -> int:
        """Output elements (``k * B * C * H * W``) per chunk of fused decoders: bounds the temporary memory."""
        return self.consistency_term.chunk_elements

    @aux_chunk_elements.setter
    def aux_chunk_elements(self, value: int) -> None:
        self.consistency_term.chunk_elements = int(value)

    @property
    def ignore_index(self) -> int:
        """The label of void pixels (``supervised_term.ignore_index``; weak targets too)."""
        return self.supervised_term.ignore_index

    @property
    def min_kept(self) -> int:
        """ab-CE's minimum kept pixels per image (``supervised_term.min_kept``)."""
        return self.supervised_term.min_kept

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the input normalisation this model expects (``Normalize(*model.normalization)``)."""
        return tuple(self.config["mean"]), tuple(self.config["std"])

    @property
    def num_aux_decoders(self) -> int:
        """K, the number of auxiliary decoders (0 for the supervised baseline)."""
        return len(self.aux_decoders)

    def perturbation_instances(self) -> Iterator[tuple[str, Perturbation, UpsampleDecoder]]:
        """``(name, perturbation module, its auxiliary decoder)`` for each auxiliary decoder, in order."""
        for name, pert, dec in zip(self.aux_names, self.perturbations, self.aux_decoders, strict=True):
            yield name, cast(Perturbation, pert), cast(UpsampleDecoder, dec)

    def encode(self, images: Tensor) -> Tensor:
        """``h(x)``: backbone + PSP, ``(B, in_channels, H, W) -> (B, z_channels, H / os, W / os)``."""
        z: Tensor = self.psp(self.encoder(images))
        return z

    def predict(self, images: Tensor) -> Tensor:
        """Main-path logits at the input size, ``(B, in_channels, H, W) -> (B, C, H, W)``.

        At a size not divisible by the output stride the decoder's logits are larger (180 rows -> 184): the
        top-left ``H x W`` are kept, row ``r`` being image row ``r`` as in training
        (:func:`~cct_train.common.logits.fit_logits`); a stride the decoder cannot undo exactly (not a power
        of two) is resized.
        """
        return fit_logits(
            self.main_decoder(self.encode(images)), images.shape[-2:], stride=self.output_stride
        )

    def param_groups(
        self, lr: float, backbone_lr_factor: float = 0.1, weight_decay: float = 1e-4
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the backbone at ``lr * backbone_lr_factor``, PSP + decoders at ``lr``.

        Each group carries a ``"name"`` (``"backbone"`` / ``"head"``); frozen parameters are left out.
        """
        backbone = [p for p in self.encoder.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in self.encoder.parameters()}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        groups = [
            {
                "name": "backbone",
                "params": backbone,
                "lr": lr * backbone_lr_factor,
                "weight_decay": weight_decay,
            },
            {"name": "head", "params": head, "lr": lr, "weight_decay": weight_decay},
        ]
        return [g for g in groups if g["params"]]

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        encoder: nn.Module | None = None,
        load_weights: bool = False,
        **overrides: Any,
    ) -> CCTModel:
        """Rebuild a model from :attr:`config` (e.g. stored in a checkpoint), then ``load_state_dict``.

        The initial backbone weights (``pretrained`` / ``weights``) are NOT loaded unless
        ``load_weights=True``: a checkpoint's state dict replaces them anyway, and this works offline.
        ``encoder`` must be given when the model was built from an ``nn.Module`` (``config["encoder"]`` is
        ``None``); ``overrides`` replace config entries.
        """
        cfg = rebuild_arguments(config, encoder=encoder, load_weights=load_weights, **overrides)
        cfg["perturbations"] = dict(cfg.get("perturbations") or {})
        return cls(**cfg)

    # ------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        images: Tensor | None = None,
        targets: Tensor | None = None,
        unlabeled: Tensor | None = None,
        *,
        consistency_weight: float | Tensor = 1.0,
        step: int | None = None,
        ce_threshold: float | Tensor | None = None,
        weak_targets: Tensor | None = None,
        weak_weight: float | Tensor = 0.0,
        generator: torch.Generator | None = None,
        strong: Tensor | None = None,
        cutmix_box: Tensor | None = None,
        cutmix_partner: Tensor | None = None,
        target_confidence: float | None = None,
        strong_weight: float | Tensor | None = None,
        aux_on_weak: bool = False,
        batches: Mapping[str, TrainBatch | Mapping[str, Any]] | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Inference (``targets=None``) or one training step's losses.

        Inference: ``images (B, in_channels, H, W) -> logits (B, C, H, W)``, the main path only.

        Training (``targets`` given), all computation inside this one call (one DDP forward per step):
        ``images`` ``(B_l, 3, H, W)`` with ``targets`` ``(B_l, H, W)`` (long, ``ignore_index`` = void) and
        ``unlabeled`` ``(B_u, 3, H', W')`` or ``None`` are encoded (one concatenated encoder pass when their
        shapes match and ``concat_batches``), and :func:`~cct_train.objectives.cct.cct_objective` computes
        ``loss = Ls + consistency_weight * Lu + weak_weight * Lw`` from the features, term by term: Ls
        (``supervised_term``: cross-entropy, or ab-CE at its threshold of the 0-based training ``step``;
        ``ce_threshold``: ab-CE at that threshold instead), Lu of the K auxiliary decoders on their
        perturbations of ``z_u`` against the detached main prediction (never training the main decoder;
        computed whenever ``unlabeled`` is given, even at weight 0, for DDP), Lw on ``weak_targets``
        ``(B_u, H', W')``.

        Cross-view CCT (``strong`` given; ``train.unlabeled.views: weak-strong``): ``unlabeled`` is the WEAK
        view, encoded without a graph, and ``strong`` ``(B_u, 3, H', W')`` the strong view of the same
        images (photometric perturbations, then CutMix with ``cutmix_box`` ``(B_u, H', W')`` bool and
        ``cutmix_partner`` ``(B_u,)`` long, or neither), encoded with the labeled images; the auxiliary
        decoders learn the weak view's mixed target on perturbations of the strong features, masked with
        ``target_confidence``; ``strong_weight`` (None: off) weights the main decoder's loss on the strong
        view (:mod:`~cct_train.objectives.crossview`). Works with no auxiliary decoder (FixMatch-style).
        ``aux_on_weak`` (``train.unlabeled.aux_view: weak``): the weak view is encoded with a graph and the
        auxiliary decoders run the paper's CCT on it; the main decoder still learns on the strong view.

        ``batches``: the same training inputs as one :class:`~cct_train.models.batch.TrainBatch` (or a
        mapping of its fields), as ``{name: batch}`` with one entry, the call of the multi-domain model
        (the trainer's, whatever the number of domains); ``images`` and the other inputs are then not given.

        Returns:
            logits at inference; in training a dict of tensors: ``loss``, ``loss_sup``, ``loss_unsup`` and
            ``loss_weak`` (0-d; the unweighted terms, 0 when absent), ``logits`` (labeled main logits at the
            targets' size, detached, for metrics); cross-view: ``loss_strong`` and ``confident`` too.
        """
        if batches is not None:
            if images is not None or targets is not None or len(batches) != 1:
                raise ValueError(
                    "a single-domain model takes batches={name: TrainBatch} with one entry, and no images"
                )
            (only,) = batches.values()
            return self.losses(TrainBatch.of(only), generator)
        if images is None:
            raise ValueError("give images (inference), images and targets, or batches={name: TrainBatch}")
        if targets is None:
            if unlabeled is not None or weak_targets is not None or strong is not None:
                raise ValueError("training inputs (unlabeled / weak_targets / strong) given without targets")
            return self.predict(images)
        batch = TrainBatch(
            images,
            targets,
            ce_threshold=ce_threshold,
            step=step,
            unlabeled=unlabeled,
            consistency_weight=consistency_weight,
            weak_targets=weak_targets,
            weak_weight=weak_weight,
            strong=strong,
            cutmix_box=cutmix_box,
            cutmix_partner=cutmix_partner,
            target_confidence=target_confidence,
            strong_weight=strong_weight,
            aux_on_weak=aux_on_weak,
        )
        return self.losses(batch, generator)

    def losses(self, batch: TrainBatch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One training step's losses on ``batch`` (see :meth:`forward`); call it through ``forward``
        (``model(batches={name: batch})``) when the model is wrapped (DDP)."""
        strong, unlabeled = batch.strong, batch.unlabeled
        z_u = z_w = None
        if strong is not None:
            if unlabeled is None or strong.shape != unlabeled.shape:
                raise ValueError(
                    "the strong view needs the weak view of the same images as `unlabeled`, of the same shape"
                    f" (got strong {tuple(strong.shape)}, unlabeled "
                    f"{None if unlabeled is None else tuple(unlabeled.shape)})"
                )
            if batch.aux_on_weak and self.num_aux_decoders > 0:
                z_w = self.encode(unlabeled)  # Lu trains the encoder through the weak view
            else:
                # The target's view: no graph (it is a constant, and its backward would cost a third pass).
                with torch.no_grad():
                    z_w = self.encode(unlabeled)
            z_l, z_u = self._encode_pair(batch.images, strong)
        elif unlabeled is not None and self.num_aux_decoders > 0:
            z_l, z_u = self._encode_pair(batch.images, unlabeled)
        else:
            z_l = self.encode(batch.images)
        return batch_objective(self, batch, z_l, z_u, z_w, generator)

    def _encode_pair(self, images: Tensor, unlabeled: Tensor) -> tuple[Tensor, Tensor]:
        """``(h(images), h(unlabeled))``: one concatenated pass when their shapes match and
        ``concat_batches`` (BatchNorm statistics over both), else two."""
        if self.concat_batches and unlabeled.shape[1:] == images.shape[1:]:
            z = self.encode(torch.cat([images, unlabeled], dim=0))
            return z[: images.shape[0]], z[images.shape[0] :]
        return self.encode(images), self.encode(unlabeled)
