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


#: The paper's seven types with fewer decoders (its 6:6:6:6:2:2:2 proportions scaled to 11): the CPU budgets'
#: full CCT (`cct demo`, the `cpu` bench workloads, the CPU study presets).
CPU_PERTURBATIONS: dict[str, int] = {
    "feature_noise": 2,
    "feature_drop": 2,
    "guided_cutout": 2,
    "dropout": 2,
    "context_mask": 1,
    "object_mask": 1,
    "vat": 1,
}


Tracker = Literal["csv", "tensorboard"]


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names the file and the offending keys."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    encoder: str = "timm:resnet50"
    pretrained: bool = False
    #: A local state dict (.pth / .pt / .safetensors) or "package:<name>", an installed weights package
    #: (`cct weights list`).
    weights: str | None = None
    output_stride: Literal[8, 16, 32] = 8
    psp_channels: int = Field(512, gt=0)
    perturbations: dict[str, int] = Field(default_factory=lambda: dict(PAPER_PERTURBATIONS))
    perturbation_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    background: list[int] = Field(default_factory=lambda: [0])
    consistency: Literal["mse", "kl", "js"] = "mse"
    #: Input normalisation ``(x - mean) / std`` of [0, 1] RGB images; None: what the encoder's pretrained
    #: weights expect (timm's ``pretrained_cfg``, else ImageNet's), see :meth:`normalization`.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    #: Labeled and unlabeled images through the encoder in ONE batch (one pass; BatchNorm statistics over
    #: both). False: two passes, as the original code (BatchNorm sees each batch alone).
    concat_batches: bool = True
    #: The decoders' sub-pixel ReLUs (see UpsampleDecoder): the paper has one in every block; by default
    #: the last block's is dropped (unconstrained logits). decoder_hidden_relu: false makes the decoders
    #: linear, which keeps them from losing channels to dead ReLUs under a high head learning rate.
    decoder_final_relu: bool = False
    decoder_hidden_relu: bool = True

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        # A path, or "package:<name>": an installed weights package (cct_train.weights), kept as text.
        return str(value) if isinstance(value, Path) else value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"std must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _mean_std(self) -> ModelConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give model.mean and model.std together (or neither: the encoder's own)")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"model.mean {self.mean} and model.std {self.std} differ in length")
        return self

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` for the images: the ones given, or the encoder's pretrained statistics."""
        if self.mean is not None and self.std is not None:
            return tuple(self.mean), tuple(self.std)
        from cct_train.encoders import input_normalization

        return input_normalization(self.encoder)

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

    @field_validator("check", mode="before")
    @classmethod
    def _check_word(cls, value: Any) -> Any:
        # `check: off` in a YAML file arrives as False (YAML 1.1 booleans).
        return "off" if value is False else value

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
    #: Linear learning-rate warm-up before the poly decay: a fraction of training (<= 1) or iterations (> 1).
    warmup: float = Field(0.0, ge=0, description="fraction of training (<= 1) or iterations (> 1)")

    def warmup_steps(self, total: int) -> int:
        """The warm-up in optimizer steps for a run of ``total`` of them."""
        return round(self.warmup * total) if self.warmup <= 1 else int(self.warmup)


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
    #: "auto": bf16 autocast where bf16 is native (CUDA compute capability >= 8.0, CPUs with AVX512-BF16 /
    #: AMX / Arm BF16), float32 elsewhere (cct_train.machine.resolve_precision); "no": float32.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "no"
    gradient_accumulation: int = Field(1, ge=1)
    eval_every: int = Field(1000, ge=0)
    checkpoint_every: int = Field(1000, ge=0)
    log_every: int = Field(20, ge=1)
    trackers: list[Tracker] = Field(default_factory=lambda: list[Tracker](["csv"]))
    max_grad_norm: float | None = Field(None, gt=0)
    #: Steps with a NaN / infinite loss are skipped; this many in a row stop training (0: no check, which
    #: also saves the one scalar host sync per step the check costs).
    nonfinite_patience: int = Field(5, ge=0)
    #: Multi-domain runs: "alternate" steps one domain per iteration (labeled + unlabeled batch of that
    #: domain, as the paper), "mix" takes a batch of every domain in each step and sums their losses.
    domain_sampling: Literal["alternate", "mix"] = "alternate"


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


class DomainConfig(_Section):
    """One domain of a multi-domain run (paper 3.4): its data, its label space and its decoders.

    The encoder (backbone + PSP) is shared by every domain; each domain has its own main decoder and
    auxiliary decoders. Keys left ``None`` take the run-wide value (``model.*`` / ``train.consistency.weight``
    / ``eval``).
    """

    #: Used in logs, checkpoints, ``cct predict --domain NAME`` and ``--set domains.NAME.key=value``.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    perturbations: dict[str, int] | None = None
    perturbation_kwargs: dict[str, dict[str, Any]] | None = None
    background: list[int] | None = None
    #: lambda_u of this domain (the consistency weight after ramp-up).
    consistency_weight: float | None = Field(None, ge=0)
    #: Weight of this domain's loss in the total (mixed steps) or in its own steps (alternating).
    loss_weight: float = Field(1.0, gt=0)
    eval: EvalConfig | None = None

    @field_validator("perturbations")
    @classmethod
    def _non_negative(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return None if value is None else ModelConfig._non_negative(value)


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
    #: Several domains trained together (paper 3.4); empty: the single domain of ``data``.
    domains: list[DomainConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.domains and "data" in self.model_fields_set and self.data != DataConfig():
            raise ValueError("give either data (one domain) or domains (several), not both")
        names = [d.name for d in self.domains]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"domain names must be unique, repeated: {repeated}")
        parts = [(f"domains.{d.name}.data", d.data) for d in self.domains] or [("data", self.data)]
        for key, data in parts:
            _split_lists_under_root(data)
            _check_crop(key, data)
        return self

    @property
    def supervised_only(self) -> bool:
        if self.domains:
            return self.train.mode == "supervised" or not any(
                view.model.perturbations for _, view in self.domain_views()
            )
        return self.train.mode == "supervised" or not self.model.perturbations

    @property
    def multi_domain(self) -> bool:
        return bool(self.domains)

    def domain_views(self) -> list[tuple[str, Config]]:
        """Each domain as a single-domain config: its data, decoders, consistency weight and eval settings.

        A single-domain config gives one view, itself, named after its data set. The views build data
        (``build_data``), run data checks and dry runs exactly as a single-domain run would.
        """
        if not self.domains:
            return [(self.data.dataset, self)]
        views = []
        for domain in self.domains:
            model = self.model.model_copy(deep=True)
            for key in ("perturbations", "perturbation_kwargs", "background"):
                value = getattr(domain, key)
                if value is not None:
                    model.__dict__[key] = dict(value) if isinstance(value, dict) else list(value)
            train = self.train.model_copy(deep=True)
            if domain.consistency_weight is not None:
                train.consistency.__dict__["weight"] = domain.consistency_weight
            view = Config.model_construct(
                experiment=self.experiment.model_copy(deep=True),
                model=model,
                data=domain.data.model_copy(deep=True),
                train=train,
                eval=(domain.eval or self.eval).model_copy(deep=True),
                domains=[],
            )
            views.append((domain.name, view))
        return views

    def to_dict(self) -> dict[str, Any]:
        # A multi-domain config has no top-level data section of its own: leave the unused default out.
        return self.model_dump(mode="json", exclude={"data"} if self.domains else None)


def _check_crop(key: str, data: DataConfig) -> None:
    if data.resize is not None and data.scale_range[1] < 1.0:
        resized_h, resized_w = data.resize
        max_h, max_w = resized_h * data.scale_range[1], resized_w * data.scale_range[1]
        if max_h < data.crop_size[0] or max_w < data.crop_size[1]:
            raise ValueError(
                f"{key}.crop_size {data.crop_size} is larger than any scaled image "
                f"({max_h:.0f}x{max_w:.0f}); lower it or raise {key}.scale_range"
            )


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


#: YAML 1.1 reads these as booleans; on the command line they are words (`data.check=off`). Pydantic
#: still turns them into booleans for boolean keys.
_WORDS = {"on", "off", "yes", "no", "y", "n"}


def _parse_value(text: str) -> Any:
    # YAML scalars: `8`, `0.5`, `true`, `[1, 2]`, `{a: 1}`, `null`; anything else stays a string.
    if text.strip().lower() in _WORDS:
        return text.strip()
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
        node: Any = result
        for part in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, part, item)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        if isinstance(node, list):
            raise ConfigError(f"override {item!r}: replace a whole list as `{'.'.join(parts[:-1])}=[...]`")
        node[parts[-1]] = _parse_value(raw)
    return result


def _list_item(items: list[Any], part: str, item: str) -> dict[str, Any]:
    """``domains.0`` (an index) or ``domains.camvid`` (the entry whose ``name`` is camvid)."""
    for entry in items:
        if isinstance(entry, dict) and str(entry.get("name")) == part:
            return entry
    if part.isdigit() and int(part) < len(items) and isinstance(items[int(part)], dict):
        return items[int(part)]  # type: ignore[no-any-return]
    names = [str(e.get("name")) for e in items if isinstance(e, dict)]
    raise ConfigError(f"override {item!r}: no entry {part!r} in the list (names: {names}, or an index)")


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
    domains = data.get("domains")
    if isinstance(domains, list):
        for domain in domains:
            if isinstance(domain, dict):
                _resolve_relative_paths({"data": domain.get("data")}, base)
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
