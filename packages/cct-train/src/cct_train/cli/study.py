"""`cct study`: the CamVid ablation (supervised, each perturbation alone, full CCT) over n and seeds, with a
report. Also runnable alone: ``python -m cct_train.cli.study camvid --budget cpu --data-root DIR``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from cct_train.cli.common import console, err, fail

#: Where the study presets live: configs/study/<name>-<budget>.yaml in the working directory or the checkout.
STUDY_DIR = Path("configs") / "study"


def preset_path(name: str, budget: str) -> Path:
    """The preset ``configs/study/<name>-<budget>.yaml``, looked up from the working directory, then from the
    repository this package was installed from (editable installs)."""
    file = STUDY_DIR / f"{name}-{budget}.yaml"
    candidates = [Path.cwd() / file, *(parent / file for parent in Path(__file__).resolve().parents)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.yaml")})
    raise FileNotFoundError(
        f"no study preset {file} (looked in the working directory and the checkout); "
        + (f"known presets: {', '.join(known)}; " if known else "")
        + "or pass --config path/to/study.yaml"
    )


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{option} takes comma-separated integers, got {text!r}")


def _words(text: str | None) -> list[str] | None:
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]


def study(
    preset: Annotated[
        str | None,
        typer.Argument(help="Study preset: configs/study/<PRESET>-<BUDGET>.yaml (e.g. camvid)."),
    ] = None,
    budget: Annotated[
        str, typer.Option(help="Budget of the preset: cpu, pretrained, pretrained-hr, gpu, pretrained-gpu.")
    ] = "cpu",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A study YAML instead of a preset.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Report folder (default runs/study/<name>-<budget>)."),
    ] = None,
    runs: Annotated[
        Path | None, typer.Option(help="Folder of the runs (checkpoints, logs; default OUTPUT/runs).")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Runs in parallel processes (threads: free cores / jobs).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="torch threads per run (default: the free cores / jobs, printed with the reason)."
        ),
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Subset of seeds, e.g. 0,1.")] = None,
    n: Annotated[str | None, typer.Option("--n", help="Subset of labeled counts, e.g. 20,50.")] = None,
    methods: Annotated[str | None, typer.Option(help="Subset of methods, e.g. supervised,cct,vat.")] = None,
    data_root: Annotated[Path | None, typer.Option(help="The data set's folder (base data.root).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a study key: --set base.train.iterations=50."),
    ] = None,
) -> None:
    """Train the supervised baseline, each perturbation alone and full CCT for every n and seed; evaluate each
    on val; write results.json, results.md and plots. Runs already done (same settings) are skipped."""
    from cct_train.config import ConfigError
    from cct_train.engine.trainer import TrainingInterrupted
    from cct_train.study import load_study_config, run_study

    if (preset is None) == (config is None):
        fail("give a preset (e.g. `cct study camvid --budget cpu`) or --config study.yaml, not both")
    from cct_train.eval.plots import PLOTS_MISSING, plots_available

    if not plots_available():  # before hours of training, not at the report
        fail(f"cct study draws its report's figures: {PLOTS_MISSING}")
    try:
        path = config if config is not None else preset_path(str(preset), budget)
    except FileNotFoundError as error:
        fail(str(error))
    overrides = list(set_ or [])
    for key, value in (("seeds", _ints(seeds, "--seeds")), ("n_labeled", _ints(n, "--n"))):
        if value is not None:
            overrides.append(f"{key}={value}")
    if methods is not None:
        overrides.append(f"methods=[{', '.join(_words(methods) or [])}]")
    if data_root is not None:
        overrides.append(f"base.data.root={data_root.expanduser().resolve()}")
    try:
        cfg = load_study_config(path, overrides)
    except ConfigError as error:
        fail(str(error))
    output = output or Path("runs") / "study" / f"{cfg.name}-{cfg.budget}"
    command = _command(
        preset, budget, config, output, runs, jobs, threads, seeds, n, methods, data_root, set_
    )
    console.print(f"study [bold]{cfg.name}[/] ({cfg.budget} budget) from {path}; report -> {output}")
    try:
        report = run_study(cfg, output, runs_dir=runs, jobs=jobs, threads=threads, command=command)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    except (KeyboardInterrupt, TrainingInterrupted):
        err.print("[bold yellow]interrupted:[/] finished runs are kept; run the same command again to resume")
        raise typer.Exit(code=130) from None
    console.print(f"\n{(output / 'results.md').read_text().split('Gain over')[0]}")
    console.print("written: " + ", ".join(str(f) for f in report.files))
    if report.failed:
        err.print(f"[bold red]{len(report.failed)} run(s) failed[/]: see {output / 'results.md'}")
        raise typer.Exit(code=1)


def _command(
    preset: str | None,
    budget: str,
    config: Path | None,
    output: Path,
    runs: Path | None,
    jobs: int | None,
    threads: int | None,
    seeds: str | None,
    n: str | None,
    methods: str | None,
    data_root: Path | None,
    overrides: list[str] | None,
) -> str:
    """The command line that repeats this study (recorded in the report)."""
    words = ["cct", "study"]
    words += [preset, "--budget", budget] if preset is not None else ["--config", str(config)]
    options = {"--output": output, "--runs": runs, "--jobs": jobs, "--threads": threads, "--seeds": seeds}
    options["--n"] = n
    options.update({"--methods": methods, "--data-root": data_root})
    for option, value in options.items():
        if value is not None:
            words += [option, str(value)]
    for item in overrides or []:
        words += ["--set", item]
    return shlex.join(words)


app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
app.command()(study)


if __name__ == "__main__":  # pragma: no cover
    app()
