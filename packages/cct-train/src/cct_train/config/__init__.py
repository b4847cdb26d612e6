"""Training configuration as validated data (pydantic), loaded from YAML with `key=value` overrides.

Every section forbids unknown keys, so a typo such as `trian.iterations` fails at load time with the
key named, instead of being silently ignored for a multi-hour run.

- :mod:`.base`: ``StrictSection`` (the base of every section, the study's too), ``ConfigError``,
  ``format_errors``, ``rename_keys`` (keys of earlier versions);
- :mod:`.schema`: the sections (``ModelConfig``, ``DataConfig``, ``TrainConfig``...) and ``Config``;
- :mod:`.loading`: ``load_config``, ``config_from_dict``, ``apply_overrides``, ``save_config``,
  ``upgrade_config`` (a stored config of an earlier version, translated).
"""

from cct_train.config.base import ConfigError, Location, StrictSection, format_errors, rename_keys
from cct_train.config.loading import (
    apply_overrides,
    config_from_dict,
    key_lines,
    load_config,
    override_keys,
    save_config,
    upgrade_config,
)
from cct_train.config.schema import (
    CPU_PERTURBATIONS,
    PAPER_PERTURBATIONS,
    Config,
    CutMixConfig,
    DataConfig,
    DomainConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    PhotometricConfig,
    SplitConfig,
    StrongViewConfig,
    Tracker,
    TrainConfig,
    UnlabeledConfig,
    UnsupervisedWeightConfig,
    check_perturbation_kwargs,
    check_perturbations,
)

__all__ = [
    "CPU_PERTURBATIONS",
    "PAPER_PERTURBATIONS",
    "Config",
    "ConfigError",
    "UnsupervisedWeightConfig",
    "CutMixConfig",
    "DataConfig",
    "DomainConfig",
    "EvalConfig",
    "Location",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "PhotometricConfig",
    "SplitConfig",
    "StrictSection",
    "StrongViewConfig",
    "TrainConfig",
    "Tracker",
    "UnlabeledConfig",
    "apply_overrides",
    "check_perturbation_kwargs",
    "check_perturbations",
    "config_from_dict",
    "format_errors",
    "key_lines",
    "load_config",
    "override_keys",
    "rename_keys",
    "save_config",
    "upgrade_config",
]
