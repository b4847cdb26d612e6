"""The study's report as Markdown (results.md): tables, timings, hardware."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cct_train.engine.hardware import (
    PRECISION_LABELS,
)
from cct_train.study.schema import CCT, CCT_FIXMATCH, CROSSVIEW, FIXMATCH, SUPERVISED
from cct_train.study.stats import Summary
from cct_train.study.tables import METHOD_LABELS, per_class_table, render_tables


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
        *_interval_lines(summaries),
        "Per-class IoU (%, mean over seeds):",
        "",
        per_class_table(
            summaries, [m for m in (SUPERVISED, CCT, FIXMATCH, CROSSVIEW, CCT_FIXMATCH) if m in methods]
        ),
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
        # reports from before `written` existed give their invocation's start
        f"- report written {report.get('written', report['started'])} at commit {report['git_commit']}",
        f"- base training config: see results.json (`base_config`); per run: `{report['runs_dir']}/n<n>/"
        "<method>/seed<seed>/config.yaml`",
    ]
    if failed:
        lines += ["", "Failed runs (left out of the tables):", ""]
        lines += [f"- n{r['n']}/{r['method']}/seed{r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _interval_lines(summaries: list[Summary]) -> list[str]:
    """The 95 % intervals of the mean paired gains, one sentence (nothing when no cell has 2 pairs)."""
    cells = [
        f"{METHOD_LABELS.get(s.method, s.method)} at n = {s.n}: [{s.delta_ci95[0]:+.1f}, {s.delta_ci95[1]:+.1f}]"
        for s in summaries
        if s.delta_ci95 is not None
    ]
    if not cells:
        return []
    return [
        "95 % interval of the mean paired gain (Student's t over the seeds; an interval that holds 0 means "
        "these seeds cannot tell the method from the baseline): " + "; ".join(cells) + ".",
        "",
    ]


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
