"""The study's tables and figures: mIoU tables, per-class table, mIoU vs n plot, qualitative grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cct_train.config import (
    config_from_dict,
)
from cct_train.study.runs import RunResult, RunSpec
from cct_train.study.schema import CCT, CCT_FIXMATCH, CROSSVIEW, FIXMATCH, SUPERVISED, StudyConfig
from cct_train.study.stats import Summary

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
    FIXMATCH: "FixMatch-style (strong view, main decoder)",
    CROSSVIEW: "cross-view CCT",
    CCT_FIXMATCH: "CCT + FixMatch-style (aux decoders on the weak view)",
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
    from cct_train.eval.plots import pyplot

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
        elif method == CROSSVIEW:
            style.update(color="darkgreen", linewidth=2.6, marker="^")
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

    from cct_train.data.build import build_eval_loader
    from cct_train.eval.inference import load_model
    from cct_train.eval.plots import predict_classes, prediction_grid

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
