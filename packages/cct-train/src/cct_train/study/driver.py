"""`run_study`: plan, run (or resume) and report a whole study."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cct_train.common.atomic import atomic_write_text
from cct_train.config import (
    Config,
    config_from_dict,
)
from cct_train.engine.hardware import (
    PrecisionChoice,
    ThreadChoice,
    choose_threads,
    resolve_precision,
)
from cct_train.study.data import resized_copy, with_resized_data
from cct_train.study.markdown import render_markdown
from cct_train.study.provenance import git_commit, hardware, write_json
from cct_train.study.runs import (
    RunResult,
    RunSpec,
    pending_runs,
    plan_runs,
    run_all,
    set_aside_other_settings,
)
from cct_train.study.schema import StudyConfig, base_config
from cct_train.study.stats import Summary, aggregate
from cct_train.study.tables import plot_miou_vs_n, qualitative_grid


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
    (:func:`cct_train.engine.hardware.resolve_precision`), and the choice with its reason.

    The runs' configs hold the precision actually used, so that a run's fingerprint says what it computed:
    ``auto`` on a CPU with native bf16 is the same run as ``bf16`` (results on disk stay valid), and on one
    without it a float32 run, not the bf16 one of another machine.
    """
    from cct_train.engine.trainer import training_device

    choice = resolve_precision(base.train.mixed_precision, training_device())
    if base.train.mixed_precision == choice.precision:
        return base, choice
    data = base.to_dict()
    data["train"]["mixed_precision"] = choice.precision
    return config_from_dict(data, "study base (precision resolved)"), choice


def _announce(precision: PrecisionChoice, jobs: int, thread_choice: ThreadChoice) -> None:
    """The precision and the parallelism up front: they decide how long the study takes."""
    from cct_train.common.progress import console

    console.print(precision.describe())
    console.print(f"{jobs} parallel run(s); {thread_choice.describe()}")


def _with_study_data(study: StudyConfig, base: Config, runs_dir: Path) -> Config:
    """With ``study.resize``, the base config on a resized copy of the data (made once, in ``runs_dir``)."""
    if study.resize is None:
        return base
    size = tuple(study.resize)
    copy = resized_copy(base, (size[0], size[1]), runs_dir / f"data-{size[0]}x{size[1]}")
    return with_resized_data(base, copy)


def _write_figures(
    study: StudyConfig,
    specs: list[RunSpec],
    summaries: list[Summary],
    by_key: dict[str, RunResult],
    output: Path,
) -> tuple[list[Path], Path | None]:
    """The report's files (results.json and .md written later) and the qualitative grid, if any."""
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
    return files, grid


def _invocation(
    study: StudyConfig,
    *,
    command: str | None,
    started: str,
    wall: float,
    trained: int,
    skipped: int,
    jobs: int,
    thread_choice: ThreadChoice,
    precision: PrecisionChoice,
    machine: dict[str, Any],
) -> dict[str, Any]:
    """This invocation's record: how it was run, on what, and how long it took."""
    return {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": started,
        "wall_seconds": round(wall, 1),
        "runs_trained": trained,
        "runs_skipped": skipped,
        "jobs": jobs,
        "threads_per_job": thread_choice.threads,
        "threads_reason": thread_choice.reason,
        "precision": {
            "requested": base_config(study).train.mixed_precision,
            "used": precision.precision,
            "reason": precision.reason,
        },
        "hardware": machine,
        "load_average_end": hardware().get("load_average"),
        "git_commit": git_commit(),
    }


def _study_report(
    study: StudyConfig,
    invocation: dict[str, Any],
    invocations: list[dict[str, Any]],
    results: list[RunResult],
    summaries: list[Summary],
    source_data: dict[str, str],
    runs_dir: Path,
    grid: Path | None,
) -> dict[str, Any]:
    """results.json: the study, the latest invocation's fields at the top level, then every run."""
    return {
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
        "git_commit": git_commit(),
        # when this report was written: a resumed study's invocation may have started hours earlier
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = hardware()
    start = time.perf_counter()
    base, precision = study_precision(base_config(study))
    if progress:
        _announce(precision, jobs, thread_choice)
    source_data = {"dataset": base.data.dataset, "root": str(base.data.root)}
    specs = plan_runs(study, _with_study_data(study, base, runs_dir), runs_dir)
    done, todo = pending_runs(specs)
    _keep_runs_of_other_settings(todo, runs_dir, say=progress)
    with _study_progress(len(todo), len(done), disable=not progress) as on_done:
        trained = run_all(todo, jobs=jobs, threads=thread_choice.threads, callback=on_done)
    by_key = {**done, **{spec.key: result for spec, result in zip(todo, trained, strict=True)}}
    results = [by_key[spec.key] for spec in specs]
    wall = time.perf_counter() - start
    summaries = aggregate(results)
    output.mkdir(parents=True, exist_ok=True)
    files, grid = _write_figures(study, specs, summaries, by_key, output)
    invocation = _invocation(
        study,
        command=command,
        started=started,
        wall=wall,
        trained=len(todo),
        skipped=len(done),
        jobs=jobs,
        thread_choice=thread_choice,
        precision=precision,
        machine=machine,
    )
    invocations = [*_earlier_invocations(output / "results.json", study), invocation]
    report = _study_report(study, invocation, invocations, results, summaries, source_data, runs_dir, grid)
    write_json(output / "results.json", report)
    atomic_write_text(output / "results.md", render_markdown(report))
    return StudyReport(report, results, files)


def _keep_runs_of_other_settings(todo: Sequence[RunSpec], runs_dir: Path, say: bool) -> None:
    """Rename the folders of runs made with other settings before training over them, and say where."""
    from cct_train.common.progress import console

    for spec in todo:
        kept = set_aside_other_settings(spec)
        if kept is not None and say:
            console.print(
                f"{spec.key}: its folder held a run with other settings; kept as {kept.relative_to(runs_dir)}"
            )


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

    from cct_train.common.progress import console

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
