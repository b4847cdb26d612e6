"""End-to-end `cct study` on the generated scenes: 1 n x 2 methods x 2 seeds, report files, resume (CPU)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cct_train.cli.study import app

PNG = b"\x89PNG\r\n\x1a\n"


def _write_tiny_study(tmp_path: Path, base: dict[str, Any], **study: Any) -> Path:
    """tmp_path/study.yaml: a study of ``base`` (a tiny config) at n = 4, seeds 0-1, 48x48 frames; ``study``
    adds or overrides keys (methods, cct_decoders, qualitative)."""
    base["model"]["background"] = [0, 1, 2]  # the scenes' stuff classes
    base["data"]["check"] = "quick"
    spec = {
        "name": "tiny",
        "budget": "test",
        "base": base,
        "n_labeled": [4],
        "seeds": [0, 1],
        "resize": [48, 48],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**spec, **study}))
    return path


def test_tiny_study_writes_a_consistent_report_and_resumes(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    _write_tiny_study(
        tmp_path,
        tiny_config(synthetic_root, tmp_path / "unused", iterations=2, checkpoint_every=0, trackers=[]),
        methods=["supervised", "cct"],
        cct_decoders={"feature_noise": 1, "object_mask": 1},
        qualitative={"images": 2},
    )
    output = tmp_path / "report"
    args = [
        "--config",
        str(tmp_path / "study.yaml"),
        "--output",
        str(output),
        "--runs",
        str(tmp_path / "runs"),
    ]

    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    report = json.loads((output / "results.json").read_text())
    markdown = (output / "results.md").read_text()
    for name in ("miou_vs_n.png", "qualitative.png"):
        assert (output / name).read_bytes()[:8] == PNG
    assert "![mIoU vs n](miou_vs_n.png)" in markdown
    assert "![predictions](qualitative.png)" in markdown
    assert report["runs_trained"] == 4
    assert report["runs_skipped"] == 0
    assert report["command"].startswith("cct study --config")
    assert {(r["method"], r["seed"]) for r in report["runs"]} == {
        ("supervised", 0),
        ("supervised", 1),
        ("cct", 0),
        ("cct", 1),
    }
    assert all(r["error"] is None and r["steps"] == 2 for r in report["runs"])
    assert (tmp_path / "runs" / "data-48x48" / "dataset.json").is_file()
    assert (tmp_path / "runs" / "n4" / "cct" / "seed1" / "model.safetensors").is_file()

    # The Markdown holds the JSON's numbers: mean ± std (seeds) per method, gain ± std (wins/seeds).
    by_method = {s["method"]: s for s in report["summary"]}
    runs = {(r["method"], r["seed"]): 100 * r["miou"] for r in report["runs"]}
    sup, cct = by_method["supervised"], by_method["cct"]
    assert sup["values"] == [runs[("supervised", 0)], runs[("supervised", 1)]]
    assert abs(cct["delta_mean"] - (cct["mean"] - sup["mean"])) < 1e-9
    sup_rows = re.findall(r"^\| supervised baseline \| 0 \| (.*) \|$", markdown, flags=re.MULTILINE)
    assert sup_rows == [f"{sup['mean']:.1f} ± {sup['std']:.1f} (2)", "reference"]
    gain_rows = re.findall(r"^\| full CCT \| 2 \| (.*) \|$", markdown, flags=re.MULTILINE)
    assert gain_rows[0] == f"{cct['mean']:.1f} ± {cct['std']:.1f} (2)"
    assert gain_rows[1] == f"{cct['delta_mean']:+.1f} ± {cct['delta_std']:.1f} ({cct['wins']}/2)"
    low, high = cct["delta_ci95"]  # two seeds: mean ± 12.71 std / sqrt(2)
    assert low < cct["delta_mean"] < high or cct["delta_std"] == 0
    assert f"full CCT at n = 4: [{low:+.1f}, {high:+.1f}]" in markdown

    # Again: every run is found done and skipped; the same numbers come out.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    second = json.loads((output / "results.json").read_text())
    assert second["runs_trained"] == 0
    assert second["runs_skipped"] == 4
    assert second["summary"] == report["summary"]
    assert [i["runs_trained"] for i in second["invocations"]] == [4, 0]
    assert second["wall_seconds_training"] == report["wall_seconds"]  # the training invocation's time is kept
    assert second["run_cpu_seconds_total"] > 0
    # the time the report was written, not when its invocation started (the two differ on a long study)
    assert second["written"] >= second["started"]
    assert f"report written {second['written']} at commit" in (output / "results.md").read_text()

    # Other settings in the same runs folder: the run is trained again, and the old one is kept beside it.
    old = tmp_path / "runs" / "n4" / "supervised" / "seed0"
    old_result = json.loads((old / "study-result.json").read_text())
    changed = [*args, "--methods", "supervised", "--seeds", "0", "--set", "base.train.iterations=3"]
    third = CliRunner().invoke(app, changed)
    assert third.exit_code == 0, third.output
    kept = old.with_name(f"seed0.{old_result['fingerprint']}")
    assert "kept as" in third.output
    assert kept.name in third.output
    assert json.loads((kept / "study-result.json").read_text()) == old_result
    assert (kept / "model.safetensors").is_file()
    assert json.loads((old / "study-result.json").read_text())["steps"] == 3


@contextmanager
def _as_a_study_worker(threads: int, share: Any = None) -> Iterator[Any]:
    """This process set up as run_all's worker (threads, CoreShare, signal handlers), put back after."""
    import signal

    import torch

    from cct_train.study import runs

    before = torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runs._worker_init(threads, share)
        yield runs
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        runs._worker_share = None
        runs._worker_stop.signum = None
        torch.set_num_threads(before)


def test_a_run_takes_the_cores_a_finished_run_freed(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    # The worker's side of run_all(share_cores=True), in this process: a Value as the spawned workers
    # inherit it, with the other worker still training (1) or done (0) when this run starts.
    import multiprocessing

    from cct_train.study.runs import CoreShare, RunSpec

    for others, expected in ((1, 1), (0, 2)):
        config = tiny_config(synthetic_root, tmp_path / f"others{others}", iterations=2, checkpoint_every=0)
        config["train"]["trackers"] = []
        spec = RunSpec(4, "cct", 0, tmp_path / f"others{others}", config)
        share = CoreShare(multiprocessing.get_context("spawn").Value("i", others), cores=2)
        with _as_a_study_worker(1, share) as runs:
            result = runs._worker_run(spec)
        assert result.threads == expected, f"{others} other run(s) training"
        assert share.running.value == others  # this run counted itself out again


def test_ctrl_c_in_a_worker_stops_its_runs_and_crosses_the_process_boundary(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    import os
    import pickle
    import signal

    from cct_train.engine.signals import StopRequest, TrainingInterrupted
    from cct_train.study.runs import RunNotStarted, RunSpec, execute_run

    config = tiny_config(synthetic_root, tmp_path / "run", iterations=4, checkpoint_every=0)
    config["train"]["trackers"] = []
    spec = RunSpec(4, "cct", 0, tmp_path / "run", config)
    # A signal while the run was being set up: it stops after its first step, with a checkpoint.
    with pytest.raises(TrainingInterrupted) as stopped:
        execute_run(spec, stop=StopRequest(signum=signal.SIGTERM))
    assert stopped.value.step == 1
    assert stopped.value.checkpoint.is_file()
    # Ctrl-C reaching an idle worker: it stays alive (no broken pool) and starts no further run.
    with _as_a_study_worker(1) as runs:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(RunNotStarted, match="SIGINT"):
            runs._worker_run(spec)
    # Both come back to the study from a worker process: picklable with their own arguments.
    for error in (stopped.value, RunNotStarted(signal.SIGINT, spec.run_dir)):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert (again.signum, again.step, again.checkpoint, str(again)) == (
            error.signum,
            error.step,
            error.checkpoint,
            str(error),
        )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the study's workers as its children")
def test_workers_stop_with_a_checkpoint_when_the_study_process_is_killed_alone(
    synthetic_root: Path, tmp_path: Path, tiny_config: Callable[..., dict[str, Any]]
) -> None:
    """`kill -9 PID` of the study (no signal reaches its workers): the workers notice, save their runs'
    checkpoints and exit, instead of training on unseen beside a restarted study (round 12 of
    docs/log/research-log.md)."""
    import subprocess
    import time

    import psutil

    _write_tiny_study(
        tmp_path,
        tiny_config(synthetic_root, tmp_path / "unused", iterations=100_000, checkpoint_every=0, trackers=[]),
        methods=["supervised"],
    )
    runs = tmp_path / "runs"
    command = "from cct_train.cli.study import app; app()"
    args = [
        "--config",
        str(tmp_path / "study.yaml"),
        "--output",
        str(tmp_path / "report"),
        "--runs",
        str(runs),
    ]
    study_process = subprocess.Popen(
        [sys.executable, "-c", command, *args, "--jobs", "2", "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # A run writes its config.yaml as it starts; from then on a stop request ends it with a checkpoint.
    started = [runs / "n4" / "supervised" / f"seed{seed}" / "config.yaml" for seed in (0, 1)]
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while not all(path.is_file() for path in started):
            assert study_process.poll() is None, "the study ended before its runs trained"
            assert time.monotonic() < deadline, "the runs did not start within 240 s"
            time.sleep(0.5)
        workers = [
            child
            for child in psutil.Process(study_process.pid).children()
            if "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2, [w.cmdline() for w in workers]
        study_process.kill()
        study_process.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, "the study's workers kept running after it was killed"
    finally:
        study_process.kill()
        for worker in workers:
            if worker.is_running():
                worker.kill()
    for path in started:
        assert list(path.parent.rglob("last*")), f"no checkpoint saved in {path.parent}"
