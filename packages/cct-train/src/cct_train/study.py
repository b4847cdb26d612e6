"""`cct study`: the paper's CamVid ablation (or the same study over any single-domain config), from one command.

For every number of labeled images n, method and seed, one ordinary :class:`~cct_train.trainer.Trainer`
run in its own folder ``<runs>/n<n>/<method>/seed<seed>/``:

- ``supervised``: the baseline (main decoder only, labeled images only);
- one run per perturbation type (``feature_noise`` ... ``vat``) with ``single_decoders`` auxiliary decoders;
- ``cct``: every type together, ``cct_decoders`` of each.

The seed draws the labeled split (``data.split.seed``; the rest of the training split is unlabeled) and
seeds the run (``experiment.seed``), so for a given (n, seed) every method sees the same labeled images and
the differences to the baseline are paired. Each run validates its final model once on the val split
(single scale, the same loader for every run) and writes ``study-result.json``; a run whose result exists
for the same configuration is skipped, so an interrupted study resumes where it stopped. The report
(``results.json``, ``results.md``, ``miou_vs_n.png``, ``qualitative.png``) is written from the results.

With ``resize`` set, the training and val images are resized once into a folder copy
(``<runs>/data-<H>x<W>/``, the same bilinear / nearest resize ``data.resize`` applies on the fly) so that no
run decodes full-size PNGs: on a 2-core CPU that decoding is a fifth of a small model's step.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cct_train.config import PAPER_PERTURBATIONS, Config, ConfigError, apply_overrides, config_from_dict
from cct_train.machine import (
    PRECISION_LABELS,
    PrecisionChoice,
    available_cores,
    choose_threads,
    cpu_info,
    resolve_precision,
)
from cct_train.machine import threads_per_job as threads_per_job  # re-exported (tests, scripts)
from cct_train.trainer import TrainingInterrupted

SUPERVISED = "supervised"
CCT = "cct"
#: The seven perturbation types, in the paper's order (the names of cct_perturb.PERTURBATIONS).
PERTURBATION_TYPES: tuple[str, ...] = (
    "feature_noise",
    "feature_drop",
    "dropout",
    "object_mask",
    "context_mask",
    "guided_cutout",
    "vat",
)
ALL_METHODS: tuple[str, ...] = (SUPERVISED, *PERTURBATION_TYPES, CCT)
RESULT_FILE = "study-result.json"


# ---------------------------------------------------------------------------------------------- config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QualitativeConfig(_Strict):
    """The grid of predictions: a few val images, ground truth, then each method's prediction."""

    #: Which n (default: the smallest, where the paper's gap is largest) and seed (default: the first).
    n: int | None = None
    seed: int | None = None
    images: int = Field(4, ge=1, le=16)
    methods: list[str] = Field(default_factory=lambda: [SUPERVISED, CCT])


class StudyConfig(_Strict):
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
    methods: list[str] = Field(default_factory=lambda: list(ALL_METHODS))
    #: Auxiliary decoders of a single-perturbation run; None: that type's count in cct_decoders.
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
        unknown = [m for m in value if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(ALL_METHODS)}")
        if not value or len(set(value)) != len(value):
            raise ValueError(f"methods must be non-empty and unique, got {value}")
        return [m for m in ALL_METHODS if m in value]  # the report's order

    @field_validator("cct_decoders")
    @classmethod
    def _known_types(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = [m for m in value if m not in PERTURBATION_TYPES]
        if unknown:
            raise ValueError(f"unknown perturbation types {unknown}; known: {', '.join(PERTURBATION_TYPES)}")
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
        unknown = [m for m in self.qualitative.methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"qualitative.methods: unknown methods {unknown}")
        return self

    def decoders(self, method: str) -> dict[str, int]:
        """The auxiliary decoders of a method's runs ({} for the supervised baseline)."""
        if method == SUPERVISED:
            return {}
        if method == CCT:
            return {name: k for name, k in self.cct_decoders.items() if k > 0}
        k = self.single_decoders if self.single_decoders is not None else self.cct_decoders.get(method, 0)
        return {method: max(1, k)}


def _format_errors(error: ValidationError) -> str:
    return "\n".join(
        f"  {'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}" for item in error.errors()
    )


def study_config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> StudyConfig:
    """A validated StudyConfig; errors name the source and every offending key (``study.<key>: ...``)."""
    try:
        study = StudyConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(f"invalid study configuration in {source}:\n{_format_errors(error)}") from None
    base_config(study, source=source)  # the base must be a valid training config too
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
    return study_config_from_dict(apply_overrides(data, overrides), str(path))


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"base training config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def base_config(study: StudyConfig, source: str = "<study>") -> Config:
    """The validated base training config (one domain only)."""
    base = _read_yaml_mapping(study.base) if isinstance(study.base, Path) else study.base
    if "domains" in base:
        raise ConfigError(
            f"{source}: base: a study runs over one data set; multi-domain configs are not supported"
        )
    try:
        return config_from_dict(base, f"{source} (base)")
    except ConfigError as error:
        raise ConfigError(str(error).replace("\n  ", "\n  base.")) from None


# ---------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    """One training run of the study: its coordinates, folder and full training config (as plain data)."""

    n: int
    method: str
    seed: int
    run_dir: Path
    config: dict[str, Any]

    @property
    def key(self) -> str:
        return f"n{self.n}/{self.method}/seed{self.seed}"


@dataclass
class RunResult:
    """What one run measured (IoUs as fractions, as the trainer reports them)."""

    n: int
    method: str
    seed: int
    fingerprint: str
    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]
    seconds: float
    steps: int
    decoders: int
    run_dir: str = ""
    error: str | None = None
    #: CPU time of the run's process (all its threads): what the run costs whatever else the machine runs.
    cpu_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(config: Mapping[str, Any]) -> str:
    """A hash of a run's training config, without where it is written or where the data lies: a result
    on disk counts as done only for the same settings."""
    data = json.loads(json.dumps(dict(config), default=str))
    data.get("experiment", {}).pop("output_dir", None)
    data.get("data", {}).pop("root", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_config(
    study: StudyConfig, base: Config, n: int, method: str, seed: int, run_dir: Path
) -> dict[str, Any]:
    """The training config of one run: the base with the run's split, seed, mode and decoders."""
    config = base.to_dict()
    config["experiment"].update(
        {"name": f"{study.name}-n{n}-{method}-seed{seed}", "output_dir": str(run_dir), "seed": seed}
    )
    config["data"]["split"] = {"n_labeled": n, "seed": seed}
    config["model"]["perturbations"] = study.decoders(method)
    config["train"]["mode"] = "supervised" if method == SUPERVISED else "cct"
    config_from_dict(config, f"run {n}/{method}/{seed}")  # fails early, naming the run
    return config


def plan_runs(study: StudyConfig, base: Config, runs_dir: Path) -> list[RunSpec]:
    """Every (n, method, seed) of the study, seed-major: an interrupted study has whole seeds first."""
    return [
        RunSpec(n, method, seed, runs_dir / f"n{n}" / method / f"seed{seed}", config)
        for seed in study.seeds
        for n in study.n_labeled
        for method in study.methods
        for config in [run_config(study, base, n, method, seed, runs_dir / f"n{n}" / method / f"seed{seed}")]
    ]


def load_result(spec: RunSpec) -> RunResult | None:
    """The stored result of a run when it exists for the same configuration, else None."""
    path = spec.run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        result = RunResult(**data)
    except (ValueError, TypeError):
        return None
    if result.fingerprint != fingerprint(spec.config) or result.error is not None:
        return None
    return result


def execute_run(spec: RunSpec) -> RunResult:
    """Train and validate one run (resuming from its last checkpoint when one exists) and store its result."""
    from cct_train.trainer import Trainer

    start, cpu_start = time.perf_counter(), time.process_time()
    config = config_from_dict(spec.config, spec.key)
    _drop_stale_checkpoints(spec)
    trainer = Trainer(config, quiet=True)
    last = trainer.checkpoint_path("last")
    if last.is_file():  # an interrupted run continues where it stopped
        trainer.resume(last)
    fit = trainer.fit()
    metrics = fit.metrics
    if not metrics:
        raise RuntimeError(f"run {spec.key}: no validation metrics (is data.val_split set?)")
    result = RunResult(
        n=spec.n,
        method=spec.method,
        seed=spec.seed,
        fingerprint=fingerprint(spec.config),
        miou=float(metrics["miou"]),
        pixel_accuracy=float(metrics["pixel_accuracy"]),
        per_class_iou={k: (None if v is None else float(v)) for k, v in metrics["per_class_iou"].items()},
        seconds=round(time.perf_counter() - start, 2),
        steps=fit.step,
        decoders=sum(config.model.perturbations.values()) if not config.supervised_only else 0,
        run_dir=str(spec.run_dir),
        cpu_seconds=round(time.process_time() - cpu_start, 2),
    )
    _write_json(spec.run_dir / RESULT_FILE, result.to_dict())
    return result


def _drop_stale_checkpoints(spec: RunSpec) -> None:
    """Remove the checkpoints of an earlier run in this folder made with other settings (its config.yaml
    differs), so that only a run of the same configuration is resumed."""
    saved = spec.run_dir / "config.yaml"
    if not saved.is_file():
        return
    previous = yaml.safe_load(saved.read_text()) or {}
    if fingerprint(previous) != fingerprint(config_from_dict(spec.config).to_dict()):
        import shutil

        shutil.rmtree(spec.run_dir / "checkpoints", ignore_errors=True)


def _worker_init(threads: int) -> None:
    import warnings

    import torch

    from cct_train.machine import SlowPrecisionWarning

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    # The study warned once in the main process (study_precision); each worker would repeat it.
    warnings.simplefilter("ignore", SlowPrecisionWarning)


def _worker_run(spec: RunSpec) -> RunResult:
    return execute_run(spec)


@contextmanager
def _torch_threads(threads: int) -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


RunCallback = Callable[[RunSpec, RunResult], None]


def pending_runs(specs: Sequence[RunSpec]) -> tuple[dict[str, RunResult], list[RunSpec]]:
    """Split ``specs`` into the results already on disk (for the same configuration) and the runs to do."""
    done: dict[str, RunResult] = {}
    todo: list[RunSpec] = []
    for spec in specs:
        result = load_result(spec)
        if result is None:
            todo.append(spec)
        else:
            done[spec.key] = result
    return done, todo


def run_all(
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    threads: int | None = None,
    callback: RunCallback | None = None,
) -> list[RunResult]:
    """Train every run of ``specs``; ``jobs`` > 1 runs them in spawned worker processes, ``threads`` torch
    threads each (default: the cores shared out). Returns the results in the order of ``specs``.

    ``callback(spec, result)`` is called as each run finishes. A failed run gives a RunResult with
    ``error`` set (NaN scores) instead of stopping the others.
    """
    threads = threads or choose_threads(jobs).threads
    results: dict[str, RunResult] = {}

    def finished(spec: RunSpec, outcome: RunResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            outcome = _failed(spec, outcome)
        results[spec.key] = outcome
        if callback is not None:
            callback(spec, outcome)

    if jobs <= 1 or len(specs) <= 1:
        with _torch_threads(threads):
            for spec in specs:
                try:
                    finished(spec, execute_run(spec))
                except TrainingInterrupted:
                    raise  # SIGINT / SIGTERM: the run saved a checkpoint; stop the study
                except Exception as error:
                    finished(spec, error)
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no forked torch / OpenMP state
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(specs)),
            mp_context=context,
            initializer=_worker_init,
            initargs=(threads,),
        ) as pool:
            pending: dict[Future[RunResult], RunSpec] = {pool.submit(_worker_run, s): s for s in specs}
            try:
                while pending:
                    done_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done_now:
                        spec = pending.pop(future)
                        failure = future.exception()
                        if isinstance(failure, TrainingInterrupted):
                            raise failure
                        finished(spec, failure if failure is not None else future.result())
            except (KeyboardInterrupt, TrainingInterrupted):
                # Ctrl-C reaches the workers too: each saves its run's checkpoint and stops; start no more.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [results[spec.key] for spec in specs]


def _failed(spec: RunSpec, error: BaseException) -> RunResult:
    return RunResult(
        n=spec.n,
        method=spec.method,
        seed=spec.seed,
        fingerprint=fingerprint(spec.config),
        miou=math.nan,
        pixel_accuracy=math.nan,
        per_class_iou={},
        seconds=0.0,
        steps=0,
        decoders=0,
        run_dir=str(spec.run_dir),
        error=f"{type(error).__name__}: {error}",
    )


# ---------------------------------------------------------------------------------------------- data copy
def resized_copy(base: Config, size: tuple[int, int], dest: Path) -> Path:
    """Write the base config's train and val splits, resized to ``size`` (H, W), as a folder data set.

    Images are resized bilinearly (antialiased) and masks by nearest neighbour, exactly as ``data.resize``
    does on the fly; masks keep 255 as ignore. Sample names are kept (CSV lists with a name column), so
    ``make_split`` draws the same labeled images as on the original. Written once: a finished copy
    (``dataset.json`` present) is reused.
    """
    from PIL import Image

    from cct_train.data import build_dataset

    if (dest / "dataset.json").is_file():
        return dest
    data = base.data
    splits = [s for s in (data.train_split, data.val_split) if s]
    tmp = dest.with_name(dest.name + ".partial")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "masks").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {}
    for split in splits:
        dataset: Any = build_dataset(data.dataset, root=data.root, split=split, resize=size, **data.options)
        meta = {
            "num_classes": int(dataset.num_classes),
            "class_names": list(dataset.class_names),
            "palette": [list(c) for c in dataset.palette],
            "ignore_index": 255,
            "source": {"dataset": data.dataset, "root": str(data.root), "resize": list(size)},
        }
        lines = ["image,mask,name"]
        for index in range(len(dataset)):  # one-off preprocessing, not a training hot path
            sample = dataset[index]
            stem = sample["name"].replace("/", "__")
            Image.fromarray(sample["image"].permute(1, 2, 0).numpy()).save(tmp / "images" / f"{stem}.png")
            Image.fromarray(sample["mask"].numpy().astype("uint8"), mode="L").save(
                tmp / "masks" / f"{stem}.png"
            )
            lines.append(f"images/{stem}.png,masks/{stem}.png,{sample['name']}")
        (tmp / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    if dest.exists():  # an older partial copy under the final name: replace it
        import shutil

        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def with_resized_data(base: Config, root: Path) -> Config:
    """The base config reading the resized folder copy at ``root`` instead of the original data."""
    config = base.to_dict()
    config["data"].update({"dataset": "folder", "root": str(root), "resize": None, "options": {}})
    return config_from_dict(config, "study base (resized copy)")


# ---------------------------------------------------------------------------------------------- maths
@dataclass(frozen=True)
class Summary:
    """mIoU of one (n, method) over seeds, in %: mean, sample standard deviation, and the paired
    difference to the supervised baseline of the same (n, seed)."""

    n: int
    method: str
    seeds: list[int]
    values: list[float]
    mean: float
    std: float
    delta_mean: float | None = None
    delta_std: float | None = None
    wins: int | None = None
    pixel_accuracy_mean: float = math.nan
    per_class_mean: dict[str, float | None] = field(default_factory=dict)
    seconds_mean: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    if not values:
        return math.nan, math.nan
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def aggregate(results: Iterable[RunResult], baseline: str = SUPERVISED) -> list[Summary]:
    """Per (n, method): mean ± std of mIoU (%) over the seeds that finished, and the paired difference to
    ``baseline`` over the seeds both finished (``wins``: seeds where the method scored higher)."""
    ok = [r for r in results if r.error is None and not math.isnan(r.miou)]
    by_cell: dict[tuple[int, str], list[RunResult]] = {}
    for r in ok:
        by_cell.setdefault((r.n, r.method), []).append(r)
    base = {(r.n, r.seed): 100 * r.miou for r in ok if r.method == baseline}
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    summaries = []
    for (n, method), cell in sorted(by_cell.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        cell = sorted(cell, key=lambda r: r.seed)
        values = [100 * r.miou for r in cell]
        mean, std = mean_std(values)
        delta_mean = delta_std = None
        wins = None
        if method != baseline:
            diffs = [100 * r.miou - base[(n, r.seed)] for r in cell if (n, r.seed) in base]
            if diffs:
                delta_mean, delta_std = mean_std(diffs)
                wins = sum(d > 0 for d in diffs)
        classes = cell[0].per_class_iou.keys()
        per_class: dict[str, float | None] = {}
        for name in classes:
            known = [100 * v for r in cell if (v := r.per_class_iou.get(name)) is not None]
            per_class[name] = mean_std(known)[0] if known else None
        summaries.append(
            Summary(
                n=n,
                method=method,
                seeds=[r.seed for r in cell],
                values=values,
                mean=mean,
                std=std,
                delta_mean=delta_mean,
                delta_std=delta_std,
                wins=wins,
                pixel_accuracy_mean=mean_std([100 * r.pixel_accuracy for r in cell])[0],
                per_class_mean=per_class,
                seconds_mean=mean_std([r.seconds for r in cell])[0],
            )
        )
    return summaries


# ---------------------------------------------------------------------------------------------- report
METHOD_LABELS: dict[str, str] = {
    SUPERVISED: "supervised baseline",
    "feature_noise": "F-Noise",
    "feature_drop": "F-Drop",
    "dropout": "DropOut",
    "object_mask": "Obj-Msk",
    "context_mask": "Con-Msk",
    "guided_cutout": "G-Cutout",
    "vat": "I-VAT",
    CCT: "full CCT",
}


def format_cell(mean: float, std: float, digits: int = 1, signed: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals (``+`` sign on request)."""
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f} ± {std:.{digits}f}"


def render_tables(
    summaries: Sequence[Summary],
    n_values: Sequence[int],
    methods: Sequence[str],
    decoders: Mapping[str, int],
) -> tuple[str, str]:
    """Two Markdown tables, one row per method and one column per n: mIoU (%) as ``mean ± std (seeds)``,
    and the paired gain over the supervised baseline as ``mean ± std (wins/seeds)``."""
    cells = {(s.n, s.method): s for s in summaries}
    header = "| method | aux decoders | " + " | ".join(f"n = {n}" for n in n_values) + " |"
    rule = "|---|---:|" + "---:|" * len(n_values)
    miou, delta = [header, rule], [header, rule]
    for method in methods:
        row_m, row_d = [], []
        for n in n_values:
            s = cells.get((n, method))
            if s is None:
                row_m.append("—")
                row_d.append("—")
                continue
            row_m.append(f"{format_cell(s.mean, s.std)} ({len(s.values)})")
            if method == SUPERVISED:
                row_d.append("reference")
            elif s.delta_mean is None or s.delta_std is None:
                row_d.append("—")
            else:
                row_d.append(
                    f"{format_cell(s.delta_mean, s.delta_std, signed=True)} ({s.wins}/{len(s.values)})"
                )
        lead = f"| {METHOD_LABELS.get(method, method)} | {decoders.get(method, 0)} | "
        miou.append(lead + " | ".join(row_m) + " |")
        delta.append(lead + " | ".join(row_d) + " |")
    return "\n".join(miou) + "\n", "\n".join(delta) + "\n"


def per_class_table(summaries: Sequence[Summary], methods: Sequence[str]) -> str:
    """Markdown: per-class IoU (%, mean over seeds) of ``methods`` at every n (one column per n, method)."""
    chosen = [s for s in summaries if s.method in methods]
    if not chosen:
        return ""
    classes = list(chosen[0].per_class_mean)
    header = "| class | " + " | ".join(f"n = {s.n} {METHOD_LABELS.get(s.method, s.method)}" for s in chosen)
    lines = [header + " |", "|---|" + "---:|" * len(chosen)]
    for name in classes:
        values = [s.per_class_mean.get(name) for s in chosen]
        lines.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot_miou_vs_n(summaries: Sequence[Summary], methods: Sequence[str], path: Path, title: str = "") -> Path:
    """mIoU (mean ± std over seeds) against n for every method, and the paired gain over the baseline."""
    from cct_train.plots import pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    cmap = plt.get_cmap("tab10")
    for index, method in enumerate(methods):
        cells = sorted((s for s in summaries if s.method == method), key=lambda s: s.n)
        if not cells:
            continue
        # Each method a little to the side (log axis) so that the error bars do not hide each other.
        dodge = 1.0 + 0.025 * (index - (len(methods) - 1) / 2)
        xs = [s.n * dodge for s in cells]
        style: dict[str, Any] = {"color": cmap(index % 10), "marker": "o", "linewidth": 1.2, "capsize": 3}
        if method == SUPERVISED:
            style.update(color="black", linestyle="--", linewidth=2.2, marker="s")
        elif method == CCT:
            style.update(color="crimson", linewidth=2.6, marker="D")
        label = METHOD_LABELS.get(method, method)
        left.errorbar(xs, [s.mean for s in cells], yerr=[s.std for s in cells], label=label, **style)
        deltas = [s for s in cells if s.delta_mean is not None]
        if method != SUPERVISED and deltas:
            right.errorbar(
                [s.n * dodge for s in deltas],
                [s.delta_mean for s in deltas],
                yerr=[s.delta_std for s in deltas],
                label=label,
                **style,
            )
    n_values = sorted({s.n for s in summaries})
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks(n_values)
        axis.set_xticklabels([str(n) for n in n_values])
        axis.minorticks_off()
        axis.set_xlabel("labeled images n (log scale)")
        axis.grid(alpha=0.3)
    right.axhline(0.0, color="black", linestyle="--", linewidth=1)
    left.set_ylabel("val mIoU (%), mean ± std over seeds")
    right.set_ylabel("mIoU - baseline mIoU (points), paired by seed")
    left.set_title("mIoU vs n")
    right.set_title("gain over the supervised baseline")
    left.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def qualitative_grid(
    specs: Sequence[RunSpec], study: StudyConfig, path: Path, results: Mapping[str, RunResult]
) -> Path | None:
    """A few val images (spread over the split), ground truth, and the predictions of the qualitative
    methods' runs at one (n, seed), coloured with the data set's palette. None when a run is missing."""
    import torch

    from cct_train.data_setup import build_eval_loader
    from cct_train.inference import load_model
    from cct_train.plots import predict_classes, prediction_grid

    q = study.qualitative
    n = q.n if q.n is not None else min(study.n_labeled)
    seed = q.seed if q.seed is not None else study.seeds[0]
    chosen = {s.method: s for s in specs if s.n == n and s.seed == seed and s.method in q.methods}
    methods = [m for m in q.methods if m in chosen]
    if not methods or any(
        results.get(chosen[m].key) is None or results[chosen[m].key].error for m in methods
    ):
        return None
    config = config_from_dict(chosen[methods[0]].config, "qualitative")
    loader, normalize, _, _ = build_eval_loader(config)
    dataset = loader.dataset
    count = min(q.images, len(dataset))  # type: ignore[arg-type]
    picks = sorted({round(i * (len(dataset) - 1) / max(1, count - 1)) for i in range(count)})  # type: ignore[arg-type]
    samples = [dataset[i] for i in picks]
    images = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["mask"] for s in samples])
    predictions = {}
    palette: list[list[int]] = []
    for method in methods:
        loaded = load_model(chosen[method].run_dir / "model.safetensors")
        palette = loaded.palette
        label = f"{METHOD_LABELS.get(method, method)}\n{100 * results[chosen[method].key].miou:.1f} mIoU"
        predictions[label] = predict_classes(loaded.model, images, normalize)
    return prediction_grid(images, masks, predictions, palette, path, dpi=100)


def hardware() -> dict[str, Any]:
    """The machine the study ran on, as far as Python can tell."""
    import torch

    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu.model,
        "cpu_capability": cpu.capability,
        "cpu_bf16_instructions": list(cpu.bf16_instructions),
        "cpu_native_bf16": cpu.native_bf16,
        "cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with suppress(OSError):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
    tmp.replace(path)


def render_markdown(report: Mapping[str, Any]) -> str:
    """results.md from the report dict (the same numbers results.json holds)."""
    summaries = [Summary(**s) for s in report["summary"]]
    methods, n_values = report["methods"], report["n_labeled"]
    miou, delta = render_tables(summaries, n_values, methods, report["decoders"])
    hw = report["hardware"]
    failed = [r for r in report["runs"] if r.get("error")]
    lines = [
        f"# Study {report['study']} ({report['budget']} budget)",
        "",
        f"{report['description']}".strip(),
        "",
        f"Validation mIoU (%) on `{report['data']['dataset']}` val, mean ± sample std over seeds "
        f"{report['seeds']} (number of finished seeds in brackets). Each seed draws its own labeled split and "
        "initialisation; every method of a seed uses the same split.",
        "",
        miou,
        "Gain over the supervised baseline (mIoU points), paired by seed: mean ± std of (method - baseline) "
        "over the seeds, and in brackets on how many seeds the method scored higher.",
        "",
        delta,
        "Per-class IoU (%, mean over seeds):",
        "",
        per_class_table(summaries, [m for m in (SUPERVISED, CCT) if m in methods]),
        "![mIoU vs n](miou_vs_n.png)",
        "",
    ]
    if report.get("qualitative"):
        lines += [f"![predictions]({report['qualitative']})", ""]
    lines += [
        "## How these numbers were made",
        "",
        f"- command: `{report['command']}`",
        *_timing_lines(report),
        f"- hardware: {hw['cpu']}{_capability_text(hw)}, {hw['cores']} cores, GPU: {hw['gpu'] or 'none'}; "
        f"torch {hw['torch']}, Python {hw['python']}",
        f"- report written {report['started']} at commit {report['git_commit']}",
        f"- base training config: see results.json (`base_config`); per run: `{report['runs_dir']}/n<n>/"
        "<method>/seed<seed>/config.yaml`",
    ]
    if failed:
        lines += ["", "Failed runs (left out of the tables):", ""]
        lines += [f"- n{r['n']}/{r['method']}/seed{r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _capability_text(hw: Mapping[str, Any]) -> str:
    """The CPU capability as " (torch CPU capability AVX512, avx512_bf16)"; empty for older reports."""
    if "cpu_capability" not in hw:
        return ""
    bf16 = ", ".join(hw.get("cpu_bf16_instructions") or []) or "no bf16 instructions"
    return f" (torch CPU capability {hw['cpu_capability']}, {bf16})"


def _timing_lines(report: Mapping[str, Any]) -> list[str]:
    invocations = report.get("invocations") or [report]
    lines = []
    for item in invocations:
        if not item.get("runs_trained"):
            continue
        load = (item.get("hardware") or {}).get("load_average")
        lines.append(
            f"- invocation started {item['started']}: {item['runs_trained']} run(s) trained in "
            f"{item['wall_seconds'] / 60:.1f} min wall, {item['jobs']} parallel run(s) x "
            f"{item['threads_per_job']} torch thread(s); load average (1, 5, 15 min) at the start {load}, "
            f"at the end {item.get('load_average_end') or 'not recorded'}; "
            f"HEAD {item.get('git_commit') or 'not recorded'} when it ended"
        )
        if item.get("precision"):
            precision = item["precision"]
            label = PRECISION_LABELS.get(precision["used"], precision["used"])
            lines.append(f"  - precision {label} (asked: {precision['requested']}; {precision['reason']})")
        if item.get("threads_reason"):
            lines.append(f"  - threads: {item['threads_per_job']} per run ({item['threads_reason']})")
    total = report.get("wall_seconds_training", report["wall_seconds"])
    lines.append(
        f"- wall time, all training invocations: {total / 60:.1f} min; the runs' own wall times add up to "
        f"{report['run_seconds_total'] / 60:.1f} min"
    )
    cpu = report.get("run_cpu_seconds_total")
    if cpu:
        cores = report["hardware"]["cores"]
        lines.append(
            f"- CPU time of all runs: {cpu / 60:.1f} min, i.e. {cpu / 60 / cores:.1f} min of wall time on "
            f"{cores} otherwise idle cores (the cost of the study, whatever else ran on the machine)"
        )
    return lines


@dataclass
class StudyReport:
    report: dict[str, Any]
    results: list[RunResult]
    files: list[Path]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.error is not None]


def study_precision(base: Config) -> tuple[Config, PrecisionChoice]:
    """The base config with ``train.mixed_precision: auto`` resolved for the device the runs train on
    (:func:`cct_train.machine.resolve_precision`), and the choice with its reason.

    The runs' configs hold the precision actually used, so that a run's fingerprint says what it computed:
    ``auto`` on a CPU with native bf16 is the same run as ``bf16`` (results on disk stay valid), and on one
    without it a float32 run, not the bf16 one of another machine.
    """
    from cct_train.trainer import _training_device

    choice = resolve_precision(base.train.mixed_precision, _training_device())
    if base.train.mixed_precision == choice.precision:
        return base, choice
    data = base.to_dict()
    data["train"]["mixed_precision"] = choice.precision
    return config_from_dict(data, "study base (precision resolved)"), choice


def run_study(
    study: StudyConfig,
    output: Path,
    *,
    runs_dir: Path | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    command: str | None = None,
    progress: bool = True,
) -> StudyReport:
    """Run (or resume) every run of ``study`` and write the report to ``output``:
    results.json, results.md, miou_vs_n.png and qualitative.png."""
    output = Path(output)
    runs_dir = Path(runs_dir) if runs_dir is not None else output / "runs"
    jobs = jobs or study.jobs
    thread_choice = choose_threads(jobs, requested=threads or study.threads)
    threads = thread_choice.threads
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = hardware()
    start = time.perf_counter()
    base = base_config(study)
    base, precision = study_precision(base)
    if progress:
        from cct_train.progress import console

        console.print(precision.describe())
        console.print(f"{jobs} parallel run(s); {thread_choice.describe()}")
    source_data = {"dataset": base.data.dataset, "root": str(base.data.root)}
    if study.resize is not None:
        size = tuple(study.resize)
        copy = resized_copy(base, (size[0], size[1]), runs_dir / f"data-{size[0]}x{size[1]}")
        base = with_resized_data(base, copy)
    specs = plan_runs(study, base, runs_dir)
    done, todo = pending_runs(specs)
    with _study_progress(len(todo), len(done), disable=not progress) as on_done:
        trained = run_all(todo, jobs=jobs, threads=threads, callback=on_done)
    by_key = {**done, **{spec.key: result for spec, result in zip(todo, trained, strict=True)}}
    results = [by_key[spec.key] for spec in specs]
    wall = time.perf_counter() - start
    summaries = aggregate(results)
    output.mkdir(parents=True, exist_ok=True)
    files = [output / "results.json", output / "results.md"]
    files.append(
        plot_miou_vs_n(
            summaries,
            study.methods,
            output / "miou_vs_n.png",
            title=f"{study.name} ({study.budget} budget): val mIoU over seeds {study.seeds}",
        )
    )
    grid = qualitative_grid(specs, study, output / "qualitative.png", by_key)
    if grid is not None:
        files.append(grid)
    invocation = {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": started,
        "wall_seconds": round(wall, 1),
        "runs_trained": len(todo),
        "runs_skipped": len(done),
        "jobs": jobs,
        "threads_per_job": threads,
        "threads_reason": thread_choice.reason,
        "precision": {
            "requested": base_config(study).train.mixed_precision,
            "used": precision.precision,
            "reason": precision.reason,
        },
        "hardware": machine,
        "load_average_end": hardware().get("load_average"),
        "git_commit": _git_commit(),
    }
    invocations = [*_earlier_invocations(output / "results.json", study), invocation]
    report: dict[str, Any] = {
        "study": study.name,
        "budget": study.budget,
        "description": study.description,
        **invocation,
        # A resumed study's time is spread over the invocations that trained runs.
        "invocations": invocations,
        "wall_seconds_training": round(
            math.fsum(i["wall_seconds"] for i in invocations if i["runs_trained"]), 1
        ),
        "run_seconds_total": round(math.fsum(r.seconds for r in results if r.error is None), 1),
        "run_cpu_seconds_total": _cpu_total(results),
        "git_commit": _git_commit(),
        "data": source_data,
        "runs_dir": str(runs_dir),
        "n_labeled": study.n_labeled,
        "methods": study.methods,
        "seeds": study.seeds,
        "decoders": {m: sum(study.decoders(m).values()) for m in study.methods},
        "study_config": study.model_dump(mode="json"),
        "base_config": base_config(study).to_dict(),
        "qualitative": grid.name if grid is not None else None,
        "summary": [s.to_dict() for s in summaries],
        "runs": [r.to_dict() for r in results],
    }
    _write_json(output / "results.json", report)
    (output / "results.md").write_text(render_markdown(report))
    return StudyReport(report, results, files)


def _earlier_invocations(path: Path, study: StudyConfig) -> list[dict[str, Any]]:
    """The invocations recorded in an earlier results.json of the same study (settings unchanged)."""
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
    except ValueError:
        return []
    if previous.get("study_config") != study.model_dump(mode="json"):
        return []
    if "invocations" in previous:
        return list(previous["invocations"])
    keys = ("command", "started", "wall_seconds", "runs_trained", "runs_skipped", "jobs", "threads_per_job")
    return [{k: previous.get(k) for k in (*keys, "hardware", "git_commit")}]


def _cpu_total(results: Sequence[RunResult]) -> float | None:
    """The runs' CPU seconds summed, when every finished run recorded them."""
    times = [r.cpu_seconds for r in results if r.error is None]
    if not times or any(t is None for t in times):
        return None
    return round(math.fsum(t for t in times if t is not None), 1)


@contextmanager
def _study_progress(total: int, done: int, disable: bool = False) -> Any:
    """A rich progress bar over the runs to train; yields the callback that advances it and prints each
    result (``done``: runs found finished, reported once)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cct_train.progress import console

    if disable:
        yield None
        return
    if done:
        console.print(f"{done} run(s) already done (same settings): skipped")
    columns = [
        TextColumn("[bold blue]study"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console) as bar:  # type: ignore[arg-type]
        task = bar.add_task("study", total=total, info="")

        def on_done(spec: RunSpec, result: RunResult) -> None:
            if result.error is not None:
                bar.console.print(f"[red]failed[/] {spec.key}: {result.error}")
            else:
                bar.console.print(f"{spec.key}: mIoU {100 * result.miou:.2f} ({result.seconds:.0f} s)")
            bar.update(task, advance=1, info=f"last: {spec.key}")

        yield on_done
