"""The study's runs: one ordinary Trainer run per (n, method, seed) in its own folder, planned, resumed from
their results, and executed in a pool of processes with their thread budgets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from cct_train.config import (
    Config,
    UnlabeledConfig,
    config_from_dict,
    rename_keys,
    upgrade_config,
)
from cct_train.engine.hardware import (
    choose_threads,
)
from cct_train.engine.signals import StopRequest
from cct_train.engine.trainer import ProgressCallback, TrainingInterrupted
from cct_train.study.provenance import write_json
from cct_train.study.schema import RESULT_FILE, SUPERVISED, StudyConfig


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
    #: torch threads when the run ended (more than it started with when it took a finished run's cores).
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(config: Mapping[str, Any]) -> str:
    """A hash of a run's training config, without where it is written or where the data lies: a result
    on disk counts as done only for the same settings."""
    # The keys renamed in 0.4 under their earlier names: runs finished before keep their fingerprint.
    data = rename_keys(json.loads(json.dumps(dict(config), default=str)), Config, to_old=True)
    data.get("experiment", {}).pop("output_dir", None)
    data.get("data", {}).pop("root", None)
    train = data.get("train", {})
    if train.get("unlabeled") == UnlabeledConfig().model_dump(mode="json"):
        # The paper's CCT, as before train.unlabeled existed: runs finished before it keep their fingerprint.
        train.pop("unlabeled")
    elif train.get("unlabeled", {}).get("aux_view") == "strong":
        # Cross-view runs finished before aux_view existed (its default) keep their fingerprint too.
        train["unlabeled"].pop("aux_view")
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
    config["train"]["unlabeled"] = study.unlabeled(method)
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


def execute_run(
    spec: RunSpec, on_log: ProgressCallback | None = None, stop: StopRequest | None = None
) -> RunResult:
    """Train and validate one run (resuming from its last checkpoint when one exists) and store its result.

    ``on_log(step, logs)`` is passed to :meth:`Trainer.fit` (called at every log interval). ``stop``: the
    trainer's stop request, shared with the caller (a worker's signal handler): a signal that arrived
    while the run was being set up stops it after its first step, with a checkpoint.
    """
    import torch

    from cct_train.engine.trainer import Trainer

    start, cpu_start = time.perf_counter(), time.process_time()
    config = config_from_dict(spec.config, spec.key)
    set_aside_other_settings(spec)  # run_study has done it and said so; a direct call is kept safe too
    # The folder is the study's own and holds this configuration's run or nothing (set_aside_other_settings
    # moved a run of other settings away): without a last.pt to resume, the run (failed, or interrupted
    # before its first checkpoint) is trained again from the start, as before.
    trainer = Trainer(config, quiet=True, overwrite=True)
    if stop is not None:
        trainer.stop = stop
    last = trainer.checkpoint_path("last")
    if last.is_file():  # an interrupted run continues where it stopped
        trainer.resume(last)
    fit = trainer.fit(on_log)
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
        threads=torch.get_num_threads(),
    )
    write_json(spec.run_dir / RESULT_FILE, result.to_dict())
    return result


def set_aside_other_settings(spec: RunSpec) -> Path | None:
    """Move an earlier run of other settings out of ``spec``'s folder, so that training this one loses nothing.

    A runs folder outlives a change of settings (``--set``, an edited study YAML): the folder of
    ``n50/cct/seed0`` may hold a finished model of the old settings. It is renamed to a sibling named by
    the old settings' fingerprint (``seed0.4f384a5bf4990018``) rather than trained over, and the new path is
    returned (None when the folder is empty or holds this configuration's run, finished or to be resumed).
    """
    previous = _other_settings_on_disk(spec)
    if previous is None:
        return None
    target = spec.run_dir.with_name(f"{spec.run_dir.name}.{previous}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = spec.run_dir.with_name(f"{spec.run_dir.name}.{previous}-{suffix}")
    spec.run_dir.rename(target)
    return target


def _other_settings_on_disk(spec: RunSpec) -> str | None:
    """The fingerprint of the run stored in ``spec.run_dir`` when its settings are not ``spec``'s, else None.

    A finished (or failed) run is judged by its result file, which holds the fingerprint of the planned
    config; an interrupted one by the config.yaml the trainer wrote, which is the full validated config, so
    it is compared with the planned config validated the same way.
    """
    result = spec.run_dir / RESULT_FILE
    if result.is_file():
        try:
            stored = str(json.loads(result.read_text())["fingerprint"])
        except (ValueError, KeyError, TypeError):
            stored = "unreadable"
        return None if stored == fingerprint(spec.config) else stored
    saved = spec.run_dir / "config.yaml"
    if saved.is_file():
        try:
            # Written by this version or an earlier one (its renamed keys translated).
            written = upgrade_config(yaml.safe_load(saved.read_text()) or {})
            stored = fingerprint(config_from_dict(written).to_dict())
        except (yaml.YAMLError, ValueError):
            stored = "unreadable"
        return None if stored == fingerprint(config_from_dict(spec.config).to_dict()) else stored
    return None


class CoreShare:
    """The cores of a batch of parallel runs, divided among the runs still training.

    With two runs side by side (the demo: the supervised baseline takes half as long as CCT), the second
    core idles once the short run ends. Each worker counts itself in ``running`` while it trains and, at
    every log interval, takes ``cores // running`` torch threads: the last run gets both cores. Thread
    counts change the order of float sums, so a run trained this way is not bit-for-bit repeatable (it
    depends on when the other finished): the study keeps fixed threads, the demo shares.

    ``torch.set_num_threads`` sets the OpenMP thread count of the calling thread only, so the change is
    made from the training loop (the trainer's log callback), not from a watcher thread.
    """

    def __init__(self, running: Any, cores: int) -> None:
        self.running = running  # a multiprocessing Value("i"), inherited by the spawned workers
        self.cores = cores

    def threads_now(self) -> int:
        return max(1, self.cores // max(1, int(self.running.value)))

    def rebalance(self, step: int = 0, logs: Mapping[str, float] | None = None) -> None:
        import torch

        wanted = self.threads_now()
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)

    @contextmanager
    def training(self) -> Any:
        with self.running.get_lock():
            self.running.value += 1
        try:
            yield
        finally:
            with self.running.get_lock():
                self.running.value -= 1


class RunNotStarted(TrainingInterrupted):
    """SIGINT / SIGTERM reached a study worker before its next run began: nothing to save; the study stops."""

    def __init__(self, signum: int, run_dir: Path) -> None:
        super().__init__(signum, 0, run_dir)
        self.args = (f"{signal.Signals(signum).name} received before the run in {run_dir} started",)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signum, self.checkpoint))


# A worker process's state, set by its initializer: its CoreShare (a multiprocessing Value reaches a
# spawned worker only through inheritance, initargs, not as an argument of each submitted run) and the
# stop request its signal handler fills. Ctrl-C reaches every worker; without the handler an idle or
# starting worker dies of KeyboardInterrupt (the pool breaks) or starts its next run anyway.
_worker_share: CoreShare | None = None
_worker_stop = StopRequest()
_worker_busy = threading.Event()  # set while a run trains in this worker

# How often a worker checks that the study process that started it is still alive.
PARENT_POLL_SECONDS = 2.0
#: The signal a study sends its workers when it is asked to stop (SIGINT / SIGTERM sent to the study's own
#: process id, by a user or a scheduler): "save your run's checkpoint and stop". Not SIGINT itself: a
#: worker that also got Ctrl-C from the terminal would take a second SIGINT for "stop at once".
STUDY_STOP = "SIGUSR1"
#: How often the study looks for a stop request while its workers train.
STOP_POLL_SECONDS = 0.5


class _StopForwarding:
    """While a pool of workers trains, SIGINT / SIGTERM sent to the study process are passed on to every
    worker (:data:`STUDY_STOP`), so that each saves its run's checkpoint and stops, and the study ends with
    them. A second signal interrupts the study at once (KeyboardInterrupt). The handler only notes the
    signal; :meth:`forward` sends it on from the main loop (signal handlers must not walk process lists)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.forwarded = False
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: Any = None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _StopForwarding:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, STUDY_STOP):
            self._previous = {sig: signal.signal(sig, self._note) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def forward(self) -> bool:
        """Send the stop on to the live workers once a signal came; True when it did (the first time)."""
        if self.signum is None or self.forwarded:
            return False
        import multiprocessing

        self.forwarded = True
        for child in multiprocessing.active_children():
            if child.pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(child.pid, getattr(signal, STUDY_STOP))
        return True


def stop_when_orphaned(
    parent: int, busy: threading.Event, poll_seconds: float = PARENT_POLL_SECONDS
) -> threading.Thread:
    """Watch, in a daemon thread, that this process's parent is still ``parent`` (a pid); once it is not,
    send this process SIGTERM, the path Ctrl-C takes: a training run saves its checkpoint and stops. Then,
    once ``busy`` is clear (no run in progress), end the process: a pool worker waits for its next run on
    a queue that its sibling workers keep open, so it would never see the study's end by itself. Returns
    the thread.

    Why: a study killed on its own (``kill PID``, SIGKILL, the OOM killer) cannot stop its spawned
    workers, which would train on unseen, and a restarted study would then train the same run folder in
    two processes at once (both writing its logs, four runs sharing two cores). Measured in round 12 of
    docs/log/research-log.md before this existed: two orphans trained for 74 minutes beside the restarted study.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)
        while busy.is_set():
            time.sleep(poll_seconds)
        os._exit(1)

    thread = threading.Thread(target=watch, name="cct-study-parent-watch", daemon=True)
    thread.start()
    return thread


def _worker_init(threads: int, share: CoreShare | None = None, parent: int | None = None) -> None:
    """Set up a study worker: its thread budget, CoreShare, signal handlers, and (``parent``: the study's
    pid) a watch that stops it when the study process is gone."""
    import warnings

    import torch

    from cct_train.engine.hardware import SlowPrecisionWarning

    global _worker_share
    _worker_share = share
    _worker_stop.signum = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _worker_stop.note)
    if hasattr(signal, STUDY_STOP):
        signal.signal(getattr(signal, STUDY_STOP), _worker_stop.request)
    if parent is not None:
        stop_when_orphaned(parent, _worker_busy)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    # The study warned once in the main process (study_precision); each worker would repeat it.
    warnings.simplefilter("ignore", SlowPrecisionWarning)


def _worker_run(spec: RunSpec) -> RunResult:
    if _worker_stop.signum is not None:
        raise RunNotStarted(_worker_stop.signum, spec.run_dir)
    share = _worker_share
    _worker_busy.set()
    try:
        if share is None:
            return execute_run(spec, stop=_worker_stop)
        with share.training():
            share.rebalance()
            return execute_run(spec, on_log=share.rebalance, stop=_worker_stop)
    finally:
        _worker_busy.clear()


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
    share_cores: bool = False,
) -> list[RunResult]:
    """Train every run of ``specs``; ``jobs`` > 1 runs them in spawned worker processes, ``threads`` torch
    threads each (default: the cores shared out). Returns the results in the order of ``specs``.

    ``share_cores``: when fewer runs than ``jobs`` are left training, the remaining ones take the freed
    threads (:class:`CoreShare`; faster, but a run is then not bit-for-bit repeatable).

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
        workers = min(jobs, len(specs))
        share = CoreShare(context.Value("i", 0), threads * workers) if share_cores else None
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(threads, share, os.getpid()),
        ) as pool:
            pending: dict[Future[RunResult], RunSpec] = {pool.submit(_worker_run, s): s for s in specs}
            try:
                with _StopForwarding() as stop:
                    while pending:
                        done_now, _ = wait(pending, timeout=STOP_POLL_SECONDS, return_when=FIRST_COMPLETED)
                        if stop.forward():
                            from cct_train.common.progress import console

                            assert stop.signum is not None
                            console.print(
                                f"{signal.Signals(stop.signum).name}: the runs in progress save their "
                                "checkpoints and stop"
                            )
                        _collect(done_now, pending, finished)
            except (KeyboardInterrupt, TrainingInterrupted):
                # The workers were asked to stop (Ctrl-C reaches them too): each saves its run's checkpoint
                # and stops; start no more.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [results[spec.key] for spec in specs]


def _collect(
    done_now: set[Future[RunResult]],
    pending: dict[Future[RunResult], RunSpec],
    finished: Callable[[RunSpec, RunResult | BaseException], None],
) -> None:
    """Record the runs that finished; a run stopped by a signal stops the study (TrainingInterrupted)."""
    for future in done_now:
        spec = pending.pop(future)
        failure = future.exception()
        if isinstance(failure, TrainingInterrupted):
            raise failure
        finished(spec, failure if failure is not None else future.result())


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
