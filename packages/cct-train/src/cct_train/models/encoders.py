"""Backbones from timm and segmentation-models-pytorch behind one entry point.

``build_encoder("timm:resnet50", output_stride=8)`` returns an :class:`Encoder`: an ``nn.Module`` whose
forward maps images ``(B, in_channels, H, W)`` to the deepest feature map ``(B, D, H / os, W / os)``, with
``D = encoder.out_channels`` and ``os = encoder.output_stride`` (the stride actually obtained, which can
differ from the one asked for when a model cannot dilate).

Sources live in the registry :data:`ENCODER_SOURCES` (``"timm"`` and ``"smp"``); a name without a
``source:`` prefix is a timm name. Weights are random by default; ``weights=path`` loads a local state dict
(``.pth`` / ``.pt`` / ``.safetensors``) and ``pretrained=True`` asks the library for its own download.

Example::

    enc = build_encoder("timm:resnet18", output_stride=8)
    z = enc(torch.randn(2, 3, 64, 64))          # (2, 512, 8, 8)
    enc = build_encoder("smp:resnet18", output_stride=16, weights="resnet18.safetensors")
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn

from cct_train.common.checkpoint import save_weights
from cct_train.common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cct_train.models.depthwise import use_fast_depthwise
from cct_train.models.weights import (
    Match,
    is_head_key,
    map_state_dict,
    read_state_dict,
    resolve_weights,
    strip_prefixes,
)

__all__ = [
    "ENCODER_SOURCES",
    "check_encoder_input",
    "Encoder",
    "EncoderSource",
    "SmpSource",
    "TimmSource",
    "build_encoder",
    "list_encoders",
    "convert_weights",
    "input_normalization",
    "load_encoder_weights",
    "resolve_normalization",
    "split_encoder_name",
]


class Encoder(nn.Module):
    """A backbone that returns its deepest feature map.

    Args:
        backbone: the wrapped network; its forward returns a tensor or a list / tuple of feature maps (the
            last one is used).
        name: the full name it was built from, e.g. ``"timm:resnet50"``.
        out_channels: ``D``, channels of the returned feature map.
        output_stride: the actual stride ``os`` of the returned map relative to the input.
        channels_last_output: the backbone returns ``(B, h, w, D)`` (timm's NHWC models, e.g. Swin); the
            encoder permutes it to ``(B, D, h, w)``.

    Shapes: ``forward(x: (B, in_channels, H, W)) -> (B, D, ceil(H / os), ceil(W / os))`` (exact division
    when ``H`` and ``W`` are multiples of ``os``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        out_channels: int,
        output_stride: int,
        channels_last_output: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.out_channels = int(out_channels)
        self.output_stride = int(output_stride)
        self.channels_last_output = channels_last_output
        #: What :func:`load_encoder_weights` did last (``loaded``, ``unexpected``, ``adapted`` key lists).
        self.load_report: dict[str, list[str]] = {}

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, D, H / os, W / os)``."""
        out = self.backbone(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        if self.channels_last_output:
            out = out.permute(0, 3, 1, 2)
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}, output_stride={self.output_stride}"


class EncoderSource(Protocol):
    """What a registry entry of :data:`ENCODER_SOURCES` provides."""

    def build(
        self, name: str, *, in_channels: int, output_stride: int, pretrained: bool, **kwargs: Any
    ) -> Encoder:
        """Build the encoder called ``name`` (without the source prefix)."""
        ...

    def names(self, pattern: str | None = None) -> list[str]:
        """Model names this source knows (without prefix), optionally filtered by a glob pattern."""
        ...


def _unknown_name_error(source: str, name: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(f'{source}:{c}' for c in close)}?" if close else ""
    return ValueError(
        f"Unknown {source} encoder {name!r}.{hint} "
        f"See cct_train.models.encoders.list_encoders({source!r}, pattern=...) for the names."
    )


def _warn_stride(full_name: str, asked: int, got: int, reason: str) -> None:
    warnings.warn(
        f"{full_name} cannot give output stride {asked} ({reason}); using its native stride {got}.",
        UserWarning,
        stacklevel=4,
    )


class TimmSource:
    """timm models with ``features_only=True``; output stride via timm's ``output_stride`` (dilation)."""

    def names(self, pattern: str | None = None) -> list[str]:
        import timm

        return list(timm.list_models(pattern or ""))

    def build(
        self, name: str, *, in_channels: int, output_stride: int, pretrained: bool, **kwargs: Any
    ) -> Encoder:
        import timm

        if not timm.is_model(name):
            raise _unknown_name_error("timm", name, self.names())
        base: dict[str, Any] = {
            "features_only": True,
            "out_indices": (-1,),
            "in_chans": in_channels,
            "pretrained": pretrained,
            **kwargs,
        }
        model: nn.Module | None = None
        reason = "not supported"
        if output_stride != 32:
            try:
                model = timm.create_model(name, output_stride=output_stride, **base)
            except (TypeError, ValueError, AssertionError, NotImplementedError) as exc:
                # TypeError: the class has no output_stride argument (ViT, Swin, EfficientViT...);
                # others: the value is not supported. Retry at the native stride below.
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                model = None
        if model is None:
            try:
                model = timm.create_model(name, **base)
            except RuntimeError as exc:
                if "features_only" in str(exc) or "feature" in str(exc).lower():
                    raise ValueError(
                        f"timm model {name!r} does not support features_only=True: {exc}"
                    ) from exc
                raise
        info: Any = model.feature_info
        channels = int(info.channels()[-1])
        stride = int(info.reduction()[-1])
        if output_stride != 32 and stride != output_stride:
            _warn_stride(f"timm:{name}", output_stride, stride, reason)
        fmt = str(getattr(model, "output_fmt", "NCHW"))
        return Encoder(
            model,
            name=f"timm:{name}",
            out_channels=channels,
            output_stride=stride,
            channels_last_output=fmt.endswith("NHWC"),
        )


class SmpSource:
    """segmentation-models-pytorch encoders (``get_encoder(name, depth=5)``), incl. its ``tu-`` names.

    smp dilates ResNet-like encoders for output stride 8 / 16 (``make_dilated``); encoders that downsample by
    pooling (VGG, DenseNet, Xception...) raise there, and we fall back to their native stride 32.
    """

    def names(self, pattern: str | None = None) -> list[str]:
        from segmentation_models_pytorch.encoders import get_encoder_names

        names = list(get_encoder_names())
        return fnmatch.filter(names, pattern) if pattern else names

    def build(
        self, name: str, *, in_channels: int, output_stride: int, pretrained: bool, **kwargs: Any
    ) -> Encoder:
        from segmentation_models_pytorch.encoders import encoders as smp_encoders
        from segmentation_models_pytorch.encoders import get_encoder

        weights: str | None = None
        if name.startswith("tu-"):
            import timm

            if not timm.is_model(name[3:]):
                raise _unknown_name_error("smp", name, [f"tu-{n}" for n in timm.list_models()])
            weights = "imagenet" if pretrained else None
        else:
            if name not in smp_encoders:
                raise _unknown_name_error("smp", name, self.names())
            if pretrained:
                available = list(smp_encoders[name].get("pretrained_settings", {}))
                if not available:
                    raise ValueError(f"smp encoder {name!r} has no pretrained weights")
                weights = "imagenet" if "imagenet" in available else available[0]

        def make(stride: int) -> nn.Module:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                return get_encoder(  # type: ignore[no-any-return]
                    name, in_channels=in_channels, depth=5, weights=weights, output_stride=stride, **kwargs
                )

        try:
            model = make(output_stride)
        except ValueError as exc:
            if output_stride == 32 or not re.search(r"dilat|stride|downsampl", str(exc), re.IGNORECASE):
                raise
            model = make(32)
            _warn_stride(f"smp:{name}", output_stride, 32, str(exc).splitlines()[0])
        channels: Any = model.out_channels
        out_channels = int(channels[-1] if isinstance(channels, (list, tuple)) else channels)
        smp_stride: Any = getattr(model, "output_stride", output_stride)
        stride = int(smp_stride)
        return Encoder(model, name=f"smp:{name}", out_channels=out_channels, output_stride=stride)


#: Registry of encoder sources: ``"<source>:<name>"`` dispatches to ``ENCODER_SOURCES[source]``.
ENCODER_SOURCES: dict[str, EncoderSource] = {"timm": TimmSource(), "smp": SmpSource()}


def split_encoder_name(name: str) -> tuple[str, str]:
    """``"smp:resnet18" -> ("smp", "resnet18")``; a bare name is timm's: ``"resnet18" -> ("timm", ...)``."""
    if ":" in name:
        source, _, model = name.partition(":")
        if source not in ENCODER_SOURCES:
            raise ValueError(
                f"Unknown encoder source {source!r} in {name!r}; known sources: {sorted(ENCODER_SOURCES)}"
            )
        return source, model
    return "timm", name


def list_encoders(source: str | None = None, pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`build_encoder`, prefixed (``"timm:resnet18"``), filtered by a glob pattern.

    timm lists every model; a few (e.g. LeViT) do not support ``features_only`` and fail in ``build_encoder``.
    """
    sources = [source] if source is not None else list(ENCODER_SOURCES)
    out: list[str] = []
    for src in sources:
        if src not in ENCODER_SOURCES:
            raise ValueError(f"Unknown encoder source {src!r}; known sources: {sorted(ENCODER_SOURCES)}")
        out.extend(f"{src}:{n}" for n in ENCODER_SOURCES[src].names(pattern))
    return out


def build_encoder(
    name: str,
    *,
    in_channels: int = 3,
    output_stride: int = 8,
    pretrained: bool = False,
    weights: str | Path | None = None,
    fast_depthwise: bool = True,
    **kwargs: Any,
) -> Encoder:
    """Build a backbone returning its deepest feature map ``(B, D, H / os, W / os)``.

    Args:
        name: ``"timm:<model>"`` (any timm model supporting ``features_only=True``; a pretrained tag such as
            ``"timm:resnet50.a1_in1k"`` is allowed), ``"smp:<encoder>"`` (any smp encoder name, including
            ``"smp:tu-<timm model>"``), or a bare timm name.
        in_channels: input channels (timm ``in_chans`` / smp ``in_channels``).
        output_stride: 8, 16 or 32 wanted; ResNet-like models dilate their last stages. Models that cannot
            fall back to their native stride with a warning: check ``encoder.output_stride``.
        pretrained: use the library's own download (timm ``pretrained=True``, smp ``weights="imagenet"``).
            Needs network access.
        weights: a local ``.pth`` / ``.pt`` / ``.safetensors`` state dict to load instead (see
            :func:`load_encoder_weights`). Exclusive with ``pretrained``.
        fast_depthwise: compute the stride-1 depthwise layers (EfficientNet, MobileNet...) on the CPU
            through :mod:`cct_train.models.depthwise`: the same layers and results, faster to train there
            (EfficientNet-Lite0 at output stride 8: a CCT step 1.8x in bf16, 1.3x in float32, on an Intel
            Xeon with AMX-BF16); no effect on other devices or on models without such layers.
        **kwargs: passed to ``timm.create_model`` / smp ``get_encoder`` (e.g. ``drop_path_rate``,
            ``dynamic_img_size=True`` for ViTs).

    Raises:
        ValueError: unknown source or model (with close matches), ``pretrained`` together with ``weights``,
            or a weights file that does not fit.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    if pretrained and weights is not None:
        raise ValueError("Pass either pretrained=True (online download) or weights=<local file>, not both")
    source, model_name = split_encoder_name(name)
    encoder = ENCODER_SOURCES[source].build(
        model_name, in_channels=in_channels, output_stride=output_stride, pretrained=pretrained, **kwargs
    )
    if weights is not None:
        load_encoder_weights(encoder, weights)
    if fast_depthwise:
        use_fast_depthwise(encoder)
    return encoder


def check_encoder_input(encoder: nn.Module, size: Sequence[int], *, where: str = "data.crop_size") -> None:
    """Encode one blank ``(1, C, h, w)`` image of ``size=(h, w)`` (eval mode, no gradients); raise a
    ValueError saying what to change when the encoder cannot (a ViT built for 224x224 given 96x96 crops).

    Run before training so that an encoder that cannot work fails in a second with a few lines, not in the
    first step with a long traceback. ``where`` names the config key the size came from.
    """
    import torch

    name = getattr(encoder, "name", type(encoder).__name__)
    parameter = next(encoder.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if device.type == "meta":
        return
    channels = int(getattr(encoder, "in_channels", 3))
    first = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d | nn.Linear)), None)
    if isinstance(first, nn.Conv2d):
        channels = first.in_channels
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, channels, int(size[0]), int(size[1]), device=device))
    except Exception as error:  # any failure means the encoder cannot train at this size
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].rstrip(".")
        raise ValueError(
            f"model.encoder {name} cannot encode {size[0]}x{size[1]} images ({where}): "
            f"{type(error).__name__}: {detail}. Transformers built for one input size (ViT: 224x224) need "
            f"{where} set to that size; otherwise choose a convolutional model.encoder "
            "(`cct encoders '*resnet*'` lists names)"
        ) from None
    finally:
        encoder.train(was_training)


def input_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of the images the encoder's pretrained weights were trained on, in [0, 1] units.

    timm names (and smp's ``tu-`` names) read timm's ``pretrained_cfg`` (``"timm:tf_efficientnet_lite0"``:
    0.5 / 0.5; a tag such as ``"resnet50.a1_in1k"`` is honoured); other smp encoders and names timm does
    not know use the ImageNet statistics. Random initialisation is indifferent to the choice; pretrained
    weights are not, so training, evaluation, prediction and export all use this pair (stored in the
    model's config).

    >>> input_normalization("timm:tf_efficientnet_lite0")
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    >>> input_normalization("timm:resnet18")
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """
    source, model = split_encoder_name(name)
    if source == "smp" and model.startswith("tu-"):
        source, model = "timm", model[3:]
    if source == "timm":
        import timm.models

        try:
            cfg = timm.models.get_pretrained_cfg(model, allow_unregistered=False)
        except (RuntimeError, ValueError):
            cfg = None
        if cfg is not None and cfg.mean and cfg.std:
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


# --------------------------------------------------------------------------------------------- weights


def load_encoder_weights(
    encoder: nn.Module, weights: str | Path | Mapping[str, Tensor]
) -> dict[str, list[str]]:
    """Load a local state dict into an encoder's backbone, tolerant of prefixes and classifier heads.

    Keys are matched by :func:`match_by_name` (strict: missing keys or shape mismatches raise ``ValueError``
    listing them; a 3-channel first convolution is adapted to ``in_channels``). Keys of the file that the
    backbone does not use are dropped: classifier heads silently, others with a warning.

    Args:
        encoder: an :class:`Encoder` (its ``backbone`` is loaded) or any module.
        weights: a ``.pth`` / ``.pt`` file (read with ``torch.load(weights_only=True)``; a nested
            ``"state_dict"`` / ``"model"`` entry is used), a ``.safetensors`` file, a state dict, or
            ``"package:<name>"``: the file of an installed weights package
            (:data:`cct_train.models.weights.WEIGHT_PACKAGES`), mapped by that package's rule (e.g. by order).

    Returns:
        ``{"loaded": [...], "unexpected": [...], "adapted": [...]}`` (also stored as ``encoder.load_report``).
    """
    target_module = encoder.backbone if isinstance(encoder, Encoder) else encoder
    target = target_module.state_dict()
    name = getattr(encoder, "name", type(encoder).__name__)
    if isinstance(weights, Mapping):
        source, label, rule = dict(weights), "state dict", "name"
    else:
        path, package = resolve_weights(weights)
        source, label = read_state_dict(path), str(weights if package is None else f"{weights} ({path})")
        rule = package.match if package is not None else "name"
        if package is not None and package.encoder.split(":")[-1] != name.split(":")[-1]:
            raise ValueError(f"{weights} holds weights for {package.encoder}, not for encoder {name}")
    try:
        mapped = map_state_dict(source, target, match=rule, label=label)  # type: ignore[arg-type]
    except ValueError as error:
        raise ValueError(f"Weights {label} do not fit encoder {name}: {error}") from None
    source_of = dict(mapped.pairs)
    adapted = [k for k, v in mapped.state.items() if v.shape != source[source_of[k]].shape]
    noisy = [k for k in mapped.unused if not is_head_key(strip_prefixes(k))]
    if noisy and rule == "name":
        warnings.warn(
            f"{len(noisy)} tensors of {label} are not used by encoder {name}, e.g. {noisy[:10]}",
            UserWarning,
            stacklevel=2,
        )
    target_module.load_state_dict(mapped.state, strict=rule == "name")
    report = {"loaded": sorted(mapped.state), "unexpected": mapped.unused, "adapted": adapted}
    if isinstance(encoder, Encoder):
        encoder.load_report = report
    return report


def convert_weights(
    source: str | Path,
    encoder: str,
    output: str | Path,
    *,
    match: Match | None = None,
    output_stride: int = 32,
    in_channels: int = 3,
) -> dict[str, object]:
    """Map a weights file onto ``encoder``'s names and save it as ``.safetensors`` (written atomically).

    Args:
        source: a ``.pth`` / ``.pt`` / ``.safetensors`` file or ``package:<name>`` (:data:`WEIGHT_PACKAGES`).
        encoder: the ``build_encoder`` name the weights are for, e.g. ``"timm:tf_efficientnet_lite0"``.
        output: the ``.safetensors`` file to write.
        match: ``"name"`` or ``"order"``; default: the package's rule, else ``"name"``.
        output_stride, in_channels: as in ``build_encoder`` (dilation does not change the weights).

    Returns:
        The mapping's summary (``loaded``, ``renamed``, ``unused`` counts and keys, ``match``) plus ``source``,
        ``encoder`` and ``output``. The converted file is checked by loading it into a fresh encoder.

    Raises:
        ValueError: the file does not fit the encoder (missing keys, shapes), or ``output`` is not
        ``.safetensors``.
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"output must be a .safetensors file, got {output}")
    path, package = resolve_weights(source)
    rule: Match = match or (package.match if package is not None else "name")
    model = build_encoder(encoder, output_stride=output_stride, in_channels=in_channels)
    try:
        mapped = map_state_dict(
            read_state_dict(path), model.backbone.state_dict(), match=rule, label=str(path)
        )
    except ValueError as error:
        raise ValueError(f"Weights {source} do not fit encoder {encoder}: {error}") from None
    metadata = {
        "cct_source": str(source),
        "cct_encoder": encoder,
        "cct_match": rule,
        "cct_pairs": json.dumps(mapped.pairs),
    }
    save_weights(output, dict(mapped.state), metadata)  # atomic, as every weights file
    load_encoder_weights(build_encoder(encoder, output_stride=output_stride, in_channels=in_channels), output)
    return {
        **mapped.summary(),
        "pairs": mapped.pairs,
        "source": str(source),
        "file": str(path),
        "encoder": encoder,
        "output": str(output),
    }


def resolve_normalization(
    encoder: str | nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model's input ``(mean, std)``: the ones given, else the encoder's pretrained statistics
    (:func:`input_normalization`; ImageNet's for a module). The one rule for a model, its config
    (``model.mean`` / ``model.std``) and the data's ``Normalize``."""
    if (mean is None) != (std is None):
        raise ValueError("give mean and std together (or neither: the encoder's pretrained statistics)")
    if mean is not None and std is not None:
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)}: same length, std > 0")
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if isinstance(encoder, str):
        return input_normalization(encoder)
    return IMAGENET_MEAN, IMAGENET_STD
