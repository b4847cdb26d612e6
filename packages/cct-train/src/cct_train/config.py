"""Training configuration as validated data (pydantic), loaded from YAML with `key=value` overrides.

Every section forbids unknown keys, so a typo such as `trian.iterations` fails at load time with the
key named, instead of being silently ignored for a multi-hour run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: The paper's final "CCT" setting: 30 auxiliary decoders in total.
PAPER_PERTURBATIONS: dict[str, int] = {
    "feature_noise": 6,
    "feature_drop": 6,
    "guided_cutout": 6,
    "dropout": 6,
    "context_mask": 2,
    "object_mask": 2,
    "vat": 2,
}


Tracker = Literal["csv", "tensorboard"]


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names the file and the offending keys."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    encoder: str = "timm:resnet50"
    pretrained: bool = False
    weights: Path | None = None
    output_stride: Literal[8, 16, 32] = 8
    psp_channels: int = Field(512, gt=0)
    perturbations: dict[str, int] = Field(default_factory=lambda: dict(PAPER_PERTURBATIONS))
    perturbation_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    background: list[int] = Field(default_factory=lambda: [0])
    consistency: Literal["mse", "kl", "js"] = "mse"

    @field_validator("perturbations")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for name, count in value.items():
            if count < 0:
                raise ValueError(f"perturbations.{name}: K must be >= 0, got {count}")
        return {name: count for name, count in value.items() if count > 0}


class SplitConfig(_Section):
    """Which training images are labeled: `n_labeled` drawn with `seed`, or explicit lists."""

    n_labeled: int | None = Field(None, ge=1)
    seed: int = 0
    labeled_list: Path | None = None
    unlabeled_list: Path | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SplitConfig:
        if self.labeled_list is not None and self.n_labeled is not None:
            raise ValueError("give either split.n_labeled or split.labeled_list, not both")
        return self


class DataConfig(_Section):
    dataset: str = "camvid"
    root: Path | None = None
    num_classes: int | None = Field(None, ge=1)
    ignore_index: int = 255
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    unlabeled_root: Path | None = None
    #: Pseudo-labels of the unlabeled images (index PNGs named like the samples, 255 = ignore), e.g. written
    #: by `cct pseudo-labels`: with them the auxiliary decoders also learn from weak labels (paper 3.3).
    pseudo_labels: Path | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    resize: tuple[int, int] | None = None
    crop_size: tuple[int, int] = (320, 320)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    batch_size: int = Field(8, ge=1)
    unlabeled_batch_size: int | None = Field(None, ge=1)
    val_batch_size: int = Field(4, ge=1)
    num_workers: int = Field(2, ge=0)
    #: Data checks at the start of training (`cct data check`): "full" decodes every file, "quick" only
    #: checks lists and files, "off" skips them.
    check: Literal["full", "quick", "off"] = "full"
    #: Leave out samples that fail the check (counted in a warning) instead of stopping.
    skip_bad_samples: bool = False

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {value}")
        return value

    @field_validator("crop_size", "resize")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {value}")
        return value


class OptimConfig(_Section):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    backbone_lr_factor: float = Field(0.1, gt=0)
    poly_power: float = Field(0.9, ge=0)


class ConsistencyConfig(_Section):
    weight: float = Field(30.0, ge=0)
    rampup: float = Field(0.1, ge=0, description="fraction of training (<= 1) or iterations (> 1)")
    schedule: Literal["sigmoid", "linear", "log", "cosine"] = "sigmoid"


class TrainConfig(_Section):
    mode: Literal["cct", "supervised"] = "cct"
    iterations: int = Field(10_000, ge=1)
    optimizer: OptimConfig = Field(default_factory=OptimConfig)
    supervised_loss: Literal["ce", "abce"] = "ce"
    abce_ramp: float = Field(0.4, gt=0, le=1)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    weak_weight: float = Field(0.4, ge=0)
    #: The original ramps the weak-label weight with the consistency weight: w_w * w_u(t) / lambda_u.
    weak_rampup: bool = True
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_accumulation: int = Field(1, ge=1)
    eval_every: int = Field(1000, ge=0)
    checkpoint_every: int = Field(1000, ge=0)
    log_every: int = Field(20, ge=1)
    trackers: list[Tracker] = Field(default_factory=lambda: list[Tracker](["csv"]))
    max_grad_norm: float | None = Field(None, gt=0)
    #: Steps with a NaN / infinite loss are skipped; this many in a row stop training (0: no check, which
    #: also saves the one scalar host sync per step the check costs).
    nonfinite_patience: int = Field(5, ge=0)


class EvalConfig(_Section):
    """How `cct eval` evaluates by default (its options override these): the paper's single scale, or
    multi-scale + flip, optionally with a sliding window for large images (Cityscapes: 512x1024)."""

    scales: list[float] = Field(default_factory=lambda: [1.0])
    flip: bool = False
    #: Sliding-window size (H, W); None predicts whole images.
    window: tuple[int, int] | None = None
    #: Window stride (H, W); None: two thirds of the window (one third overlap).
    stride: tuple[int, int] | None = None

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError(f"scales must be positive and at least one, got {value}")
        return value

    @field_validator("window", "stride")
    @classmethod
    def _sizes(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {value}")
        return value


class ExperimentConfig(_Section):
    name: str = "cct"
    output_dir: Path = Path("runs/cct")
    seed: int = 0


class Config(_Section):
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _split_lists_under_root(self.data)
        if self.data.resize is not None and self.data.scale_range[1] < 1.0:
            resized_h, resized_w = self.data.resize
            max_h, max_w = resized_h * self.data.scale_range[1], resized_w * self.data.scale_range[1]
            if max_h < self.data.crop_size[0] or max_w < self.data.crop_size[1]:
                raise ValueError(
                    f"data.crop_size {self.data.crop_size} is larger than any scaled image "
                    f"({max_h:.0f}x{max_w:.0f}); lower it or raise data.scale_range"
                )
        return self

    @property
    def supervised_only(self) -> bool:
        return self.train.mode == "supervised" or not self.model.perturbations

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _split_lists_under_root(data: DataConfig) -> None:
    """Relative split lists that do not exist from the working directory are files under ``data.root``
    (e.g. ``splits/1464/labeled.txt`` as written by `cct data prepare`), so a config names them once for
    every copy of the data set."""
    if data.root is None:
        return
    split = data.split
    for key in ("labeled_list", "unlabeled_list"):
        path: Path | None = getattr(split, key)
        if path is not None and not path.is_absolute() and not path.exists():
            split.__dict__[key] = Path(data.root) / path  # no re-validation: the value stays a Path


def _parse_value(text: str) -> Any:
    # YAML scalars: `8`, `0.5`, `true`, `[1, 2]`, `{a: 1}`, `null`; anything else stays a string.
    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to a nested dict, returning a new dict."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(raw)
    return result


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(f"invalid configuration in {source}:\n{_format_errors(error)}") from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
        # A relative path that does not exist from the working directory is tried relative to the
        # config file, so a config can travel together with its data and split lists.
        data = _resolve_relative_paths(data, path.parent)
    data = apply_overrides(data, overrides)
    return config_from_dict(data, source)


_PATH_KEYS = {
    ("data", "root"),
    ("data", "unlabeled_root"),
    ("data", "pseudo_labels"),
    ("data", "split", "labeled_list"),
    ("data", "split", "unlabeled_list"),
    ("model", "weights"),
}


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            value = Path(node[keys[-1]]).expanduser()
            if not value.is_absolute() and not value.exists() and (base / value).exists():
                node[keys[-1]] = str(base / value)
    return data


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
