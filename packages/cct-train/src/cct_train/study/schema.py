"""The study's configuration (`cct study FILE`): methods, labeled counts, seeds, budgets, the base training
config it varies; validated like the training config (unknown keys named).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cct_perturb import PERTURBATIONS
from cct_train.config import (
    PAPER_PERTURBATIONS,
    Config,
    ConfigError,
    Location,
    StrictSection,
    UnlabeledConfig,
    apply_overrides,
    config_from_dict,
    format_errors,
    override_keys,
)

SUPERVISED = "supervised"
CCT = "cct"
#: Cross-view methods (issue #39; train.unlabeled.views: weak-strong with the study's ``crossview`` block):
#: the FixMatch-style baseline (strong view, main decoder only, no auxiliary decoder) and cross-view CCT
#: (cct_decoders on the strong view's features, and the main decoder on the strong view); and the sum of the
#: paper's CCT and the FixMatch-style term (cct_decoders on the WEAK view's features, ``aux_view: weak``).
FIXMATCH = "fixmatch"
CROSSVIEW = "crossview"
CCT_FIXMATCH = "cct_fixmatch"
CROSS_VIEW_METHODS: tuple[str, ...] = (FIXMATCH, CROSSVIEW, CCT_FIXMATCH)
#: The paper's seven perturbation types (its CamVid ablation), in the report's order. Spelled out, not read
#: off the registry: a perturbation registered later is a method a study may name in ``methods:`` (see
#: :func:`known_methods`), never a run that a study gains by itself.
PERTURBATION_TYPES: tuple[str, ...] = (
    "feature_noise",
    "feature_drop",
    "dropout",
    "object_mask",
    "context_mask",
    "guided_cutout",
    "vat",
)
#: The paper's methods and the cross-view ones, in the report's order.
ALL_METHODS: tuple[str, ...] = (SUPERVISED, *PERTURBATION_TYPES, CCT, *CROSS_VIEW_METHODS)
#: A study's methods when it names none: the paper's ablation (the cross-view methods are asked for by name,
#: so that a study written before them plans the same runs).
DEFAULT_METHODS: tuple[str, ...] = (SUPERVISED, *PERTURBATION_TYPES, CCT)
RESULT_FILE = "study-result.json"


def known_methods() -> tuple[str, ...]:
    """Every method a study may name, in the report's order: :data:`ALL_METHODS` with the perturbations
    registered beyond the paper's seven (``cct_perturb.PERTURBATIONS``, read now) after those seven."""
    extra = tuple(name for name in PERTURBATIONS if name not in PERTURBATION_TYPES)
    return (SUPERVISED, *PERTURBATION_TYPES, *extra, CCT, *CROSS_VIEW_METHODS)


def _cross_view_settings(value: Any) -> Any:
    """The ``crossview`` block is ``train.unlabeled`` of the cross-view runs: its views are weak-strong."""
    if isinstance(value, Mapping):
        value = dict(value)
        views = value.setdefault("views", "weak-strong")
        if views != "weak-strong":
            raise ValueError(f"crossview.views is weak-strong (the block's meaning), got {views!r}")
    return value


# ---------------------------------------------------------------------------------------------- config
class QualitativeConfig(StrictSection):
    """The grid of predictions: a few val images, ground truth, then each method's prediction."""

    #: Which n (default: the smallest, where the paper's gap is largest) and seed (default: the first).
    n: int | None = None
    seed: int | None = None
    images: int = Field(4, ge=1, le=16)
    methods: list[str] = Field(default_factory=lambda: [SUPERVISED, CCT])


class StudyConfig(StrictSection):
    """What a study trains: a base training config, and the grid of n x methods x seeds over it."""

    name: str = "study"
    #: Which budget these settings are (e.g. "cpu", "gpu"): reported beside every figure.
    budget: str = "custom"
    description: str = ""
    #: The training config every run starts from (the sections of `cct train`), inline or a YAML path
    #: (relative to the study file). Its split, seed, mode and perturbations are set per run.
    base: dict[str, Any] | Path
    n_labeled: list[int] = Field(default_factory=lambda: [20, 50, 100])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    #: Auxiliary decoders of a single-perturbation run; None: that type's count in cct_decoders (1 for a
    #: type it does not list).
    single_decoders: int | None = Field(2, ge=1)
    #: Auxiliary decoders of the full CCT run, per type (default: the paper's 30).
    cct_decoders: dict[str, int] = Field(default_factory=lambda: dict(PAPER_PERTURBATIONS))
    #: Resize every image and mask once to (H, W) into a folder copy; None trains on the data as it is.
    resize: tuple[int, int] | None = None
    #: Runs in parallel worker processes, each with (cores / jobs) torch threads.
    jobs: int = Field(1, ge=1)
    #: torch threads of each run; None: the cores shared out between the jobs.
    threads: int | None = Field(None, ge=1)
    qualitative: QualitativeConfig = Field(default_factory=QualitativeConfig)
    #: ``train.unlabeled`` of the cross-view runs (views: weak-strong; confidence, main_on_strong,
    #: main_weight, strong: photometric / cutmix). The other methods train with the paper's CCT (views:
    #: same); fixmatch's main decoder always learns from the strong view (its only unlabeled loss).
    crossview: UnlabeledConfig = Field(default_factory=lambda: UnlabeledConfig(views="weak-strong"))

    @field_validator("crossview", mode="before")
    @classmethod
    def _weak_strong(cls, value: Any) -> Any:
        return _cross_view_settings(value)

    @field_validator("n_labeled", "seeds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one value")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate values in {value}")
        return value

    @field_validator("n_labeled")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if min(value) < 1:
            raise ValueError(f"n_labeled values must be >= 1, got {value}")
        return sorted(value)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        known = known_methods()
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(known)}")
        if not value or len(set(value)) != len(value):
            raise ValueError(f"methods must be non-empty and unique, got {value}")
        return [m for m in known if m in value]  # the report's order

    @field_validator("cct_decoders")
    @classmethod
    def _known_types(cls, value: dict[str, int]) -> dict[str, int]:
        registered = list(PERTURBATIONS)  # the registered names, without the aliases
        unknown = [m for m in value if m not in registered]
        if unknown:
            raise ValueError(f"unknown perturbation types {unknown}; known: {', '.join(registered)}")
        if any(k < 0 for k in value.values()) or not any(value.values()):
            raise ValueError(f"decoder counts must be >= 0 with at least one > 0, got {value}")
        return value

    @field_validator("resize")
    @classmethod
    def _size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _qualitative(self) -> StudyConfig:
        unknown = [m for m in self.qualitative.methods if m not in known_methods()]
        if unknown:
            raise ValueError(f"qualitative.methods: unknown methods {unknown}")
        return self

    def unlabeled(self, method: str) -> dict[str, Any]:
        """``train.unlabeled`` of a method's runs: the ``crossview`` block for the cross-view methods (with
        main_on_strong for fixmatch and cct_fixmatch, whose strong-view loss defines them, and aux_view: weak
        for cct_fixmatch), the paper's CCT for the others."""
        if method not in CROSS_VIEW_METHODS:
            return UnlabeledConfig().model_dump(mode="json")
        settings = self.crossview.model_dump(mode="json")
        if method in (FIXMATCH, CCT_FIXMATCH):
            settings["main_on_strong"] = True
        if method == CCT_FIXMATCH:
            settings["aux_view"] = "weak"
        return settings

    def decoders(self, method: str) -> dict[str, int]:
        """The auxiliary decoders of a method's runs ({} for the supervised baseline and fixmatch)."""
        if method in (SUPERVISED, FIXMATCH):
            return {}
        if method in (CCT, CROSSVIEW, CCT_FIXMATCH):
            return {name: k for name, k in self.cct_decoders.items() if k > 0}
        k = self.single_decoders if self.single_decoders is not None else self.cct_decoders.get(method, 0)
        return {method: max(1, k)}


def study_config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", origins: Mapping[Location, str] | None = None
) -> StudyConfig:
    """A validated StudyConfig; errors name the source and every offending key (``study.<key>: ...``),
    with where it was set (``origins``, e.g. from :func:`~cct_train.config.loading.override_keys`)."""
    origins = origins or {}
    try:
        study = StudyConfig.model_validate(dict(data))
    except ValidationError as error:
        details = format_errors(error, schema=StudyConfig, origins=origins)
        raise ConfigError(f"invalid study configuration in {source}:\n{details}") from None
    base_origins = {key[1:]: where for key, where in origins.items() if key[:1] == ("base",)}
    base_config(study, source=source, origins=base_origins)  # the base must be a valid training config too
    return study


def load_study_config(path: str | Path, overrides: Iterable[str] = ()) -> StudyConfig:
    """Load a study YAML; ``overrides`` (``key=value``) apply to the study, e.g. ``base.train.iterations=10``.

    A ``base`` given as a path is read relative to the study file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if isinstance(data.get("base"), str):
        base = Path(data["base"]).expanduser()
        if not base.is_absolute() and not base.exists():
            base = path.parent / base
        data["base"] = _read_yaml_mapping(base)
    overrides = list(overrides)
    return study_config_from_dict(apply_overrides(data, overrides), str(path), override_keys(overrides))


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"base training config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def base_config(
    study: StudyConfig, source: str = "<study>", origins: Mapping[Location, str] | None = None
) -> Config:
    """The validated base training config (one domain only); ``origins`` of its keys, without ``base.``."""
    base = _read_yaml_mapping(study.base) if isinstance(study.base, Path) else study.base
    if "domains" in base:
        raise ConfigError(
            f"{source}: base: a study runs over one data set; multi-domain configs are not supported"
        )
    config = config_from_dict(base, f"{source} (base)", origins, prefix="base.")
    if config.train.unlabeled != UnlabeledConfig():
        raise ConfigError(
            f"{source}: base.train.unlabeled would change every method's unlabeled objective; the study sets "
            "it per method: put the cross-view settings in the study's `crossview:` block (used by the "
            "fixmatch and crossview methods) and leave base.train.unlabeled out"
        )
    return config
