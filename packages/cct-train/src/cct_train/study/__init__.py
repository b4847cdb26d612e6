"""`cct study`: the paper's CamVid ablation (or the same study over any single-domain config), from one command.

For every number of labeled images n, method and seed, one ordinary Trainer run in its own folder
``<runs>/n<n>/<method>/seed<seed>/``; the report (``results.json``, ``results.md``, ``miou_vs_n.png``,
``qualitative.png``) is written from the runs' results. By concept:

- :mod:`.schema`: the study config (``StudyConfig``, ``load_study_config``) and its method names;
- :mod:`.runs`: planning, resuming and executing the runs (a process pool with thread budgets);
- :mod:`.data`: the resized copy of the data set, made once;
- :mod:`.stats`: means, standard deviations and paired differences over seeds;
- :mod:`.tables`: tables and figures; :mod:`.markdown`: results.md; :mod:`.provenance`: hardware, commit;
- :mod:`.driver`: ``run_study``, the whole study (plan, run or resume, report).
"""

from cct_train.engine.hardware import threads_per_job as threads_per_job  # re-exported (tests, scripts)
from cct_train.study.data import (
    resized_copy,
    with_resized_data,
)
from cct_train.study.driver import (
    StudyReport,
    run_study,
    study_precision,
)
from cct_train.study.markdown import (
    render_markdown,
)
from cct_train.study.provenance import (
    git_commit,
    hardware,
    write_json,
)
from cct_train.study.runs import (
    RunCallback,
    RunResult,
    RunSpec,
    execute_run,
    fingerprint,
    load_result,
    pending_runs,
    plan_runs,
    run_all,
    run_config,
    set_aside_other_settings,
)
from cct_train.study.schema import (
    ALL_METHODS,
    CCT,
    CCT_FIXMATCH,
    CROSS_VIEW_METHODS,
    CROSSVIEW,
    DEFAULT_METHODS,
    FIXMATCH,
    PERTURBATION_TYPES,
    RESULT_FILE,
    SUPERVISED,
    QualitativeConfig,
    StudyConfig,
    base_config,
    known_methods,
    load_study_config,
    study_config_from_dict,
)
from cct_train.study.stats import (
    Summary,
    aggregate,
    mean_interval95,
    mean_std,
    t_quantile_975,
)
from cct_train.study.tables import (
    METHOD_LABELS,
    format_cell,
    per_class_table,
    plot_miou_vs_n,
    qualitative_grid,
    render_tables,
)

__all__ = [
    "ALL_METHODS",
    "CCT",
    "CCT_FIXMATCH",
    "CROSSVIEW",
    "CROSS_VIEW_METHODS",
    "DEFAULT_METHODS",
    "FIXMATCH",
    "METHOD_LABELS",
    "PERTURBATION_TYPES",
    "QualitativeConfig",
    "RESULT_FILE",
    "RunCallback",
    "RunResult",
    "RunSpec",
    "SUPERVISED",
    "StudyConfig",
    "StudyReport",
    "Summary",
    "aggregate",
    "base_config",
    "execute_run",
    "fingerprint",
    "known_methods",
    "format_cell",
    "git_commit",
    "hardware",
    "load_result",
    "load_study_config",
    "mean_interval95",
    "mean_std",
    "pending_runs",
    "per_class_table",
    "plan_runs",
    "plot_miou_vs_n",
    "qualitative_grid",
    "render_markdown",
    "render_tables",
    "resized_copy",
    "run_all",
    "run_config",
    "run_study",
    "set_aside_other_settings",
    "study_config_from_dict",
    "study_precision",
    "t_quantile_975",
    "with_resized_data",
    "write_json",
    "threads_per_job",
]
