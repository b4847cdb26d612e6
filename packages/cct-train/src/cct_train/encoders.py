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
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

__all__ = [
    "ENCODER_SOURCES",
    "Encoder",
    "EncoderSource",
    "SmpSource",
    "TimmSource",
    "build_encoder",
    "list_encoders",
    "load_encoder_weights",
    "split_encoder_name",
]

#: Prefixes stripped from state-dict keys before matching (checkpoints of wrapped / nested models).
STRIP_PREFIXES: tuple[str, ...] = ("module.", "model.", "encoder.", "backbone.", "_orig_mod.")

#: Key patterns of classification heads and pooling-side layers that a backbone does not hold; such keys in a
#: weights file are dropped silently (other unexpected keys are reported with a warning).
HEAD_KEY_PATTERNS: tuple[str, ...] = (
    r"^(fc|head|heads|classifier|last_linear|logits|pre_logits|head_drop)(\.|_|$)",
    r"^(conv_head|bn2|norm_head|fc_norm|global_pool|head_norm)(\.|$)",
    r"^norm\.(weight|bias)$",
)


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
        f"See cct_train.encoders.list_encoders({source!r}, pattern=...) for the names."
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
    return encoder


# --------------------------------------------------------------------------------------------- weights


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    # Common checkpoint layouts: {"state_dict": ...}, {"model": ...}, {"model_state_dict": ...}.
    for key in ("state_dict", "model", "model_state_dict", "module", "encoder"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def _normalise_key(key: str) -> str:
    # timm's features_only wrappers flatten nested sequentials ("stages.0" -> "stages_0"); "." vs "_"
    # is not meaningful for matching.
    return _strip_prefixes(key).replace(".", "_")


def _is_head_key(key: str) -> bool:
    return any(re.search(p, key) for p in HEAD_KEY_PATTERNS)


def load_encoder_weights(
    encoder: nn.Module, weights: str | Path | Mapping[str, Tensor]
) -> dict[str, list[str]]:
    """Load a local state dict into an encoder's backbone, tolerant of prefixes and classifier heads.

    Keys are matched after stripping ``module.``, ``model.``, ``encoder.``, ``backbone.`` (repeatedly) and
    ignoring ``.`` vs ``_`` (timm's flattened feature wrappers). Every backbone tensor must be found
    (strict): missing keys or shape mismatches raise ``ValueError`` listing them. A first convolution saved
    for 3 input channels is adapted to ``in_channels`` (timm's ``adapt_input_conv``). Keys of the file that
    the backbone does not use are dropped: classifier heads silently, others with a warning.

    Args:
        encoder: an :class:`Encoder` (its ``backbone`` is loaded) or any module.
        weights: a ``.pth`` / ``.pt`` file (read with ``torch.load(weights_only=True)``; a nested
            ``"state_dict"`` / ``"model"`` entry is used), a ``.safetensors`` file, or a state dict.

    Returns:
        ``{"loaded": [...], "unexpected": [...], "adapted": [...]}`` (also stored as ``encoder.load_report``).
    """
    source = weights if isinstance(weights, Mapping) else _read_state_dict(Path(weights))
    label = "state dict" if isinstance(weights, Mapping) else str(weights)
    target_module = encoder.backbone if isinstance(encoder, Encoder) else encoder
    target = target_module.state_dict()

    by_norm: dict[str, str] = {}
    ambiguous: set[str] = set()
    for key in source:
        norm = _normalise_key(key)
        if norm in by_norm:
            ambiguous.add(norm)
        by_norm[norm] = key

    new_state: dict[str, Tensor] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    adapted: list[str] = []
    used: set[str] = set()
    for key, ref in target.items():
        src_key = key if key in source else by_norm.get(_normalise_key(key))
        if src_key is None or (src_key != key and _normalise_key(key) in ambiguous):
            missing.append(key)
            continue
        value = source[src_key]
        if value.shape != ref.shape:
            if (
                value.ndim == 4
                and ref.ndim == 4
                and value.shape[0] == ref.shape[0]
                and value.shape[2:] == ref.shape[2:]
            ):
                from timm.models import adapt_input_conv

                value = adapt_input_conv(int(ref.shape[1]), value, base_chans=int(value.shape[1]))
                adapted.append(key)
            else:
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(ref.shape)}")
                continue
        new_state[key] = value.to(dtype=ref.dtype)
        used.add(src_key)

    name = getattr(encoder, "name", type(encoder).__name__)
    if not new_state:
        raise ValueError(
            f"No tensor of {label} matches encoder {name}: is it the right architecture? "
            f"File keys start with {list(source)[:5]}, model keys with {list(target)[:5]}"
        )
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[:10]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, e.g. {mismatched[:10]}")
        raise ValueError(f"Weights {label} do not fit encoder {name}: " + "; ".join(parts))

    unexpected = [k for k in source if k not in used]
    noisy = [k for k in unexpected if not _is_head_key(_strip_prefixes(k))]
    if noisy:
        warnings.warn(
            f"{len(noisy)} tensors of {label} are not used by encoder {name}, e.g. {noisy[:10]}",
            UserWarning,
            stacklevel=2,
        )
    target_module.load_state_dict(new_state, strict=True)
    report = {"loaded": sorted(new_state), "unexpected": unexpected, "adapted": adapted}
    if isinstance(encoder, Encoder):
        encoder.load_report = report
    return report
