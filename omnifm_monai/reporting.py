"""Read finished federated runs and write the comparison report (JSON, Markdown, PNG).

The report is task-agnostic: it averages over sites whichever metrics the task reports
(:attr:`omnifm_monai.tasks.FederatedTask.report_metrics`) and leads with its headline metric.
Metrics in [0, 1] (accuracy, F1, Dice, SSIM, Qabf, VIF) are shown in %, PSNR in dB, HD95 in pixels,
mutual information and entropy in bits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "RunResult",
    "load_run",
    "comparison_rows",
    "format_metric",
    "markdown_table",
    "verdict_lines",
    "write_report",
    "metric_scale",
    "metric_unit",
    "CLASSIFICATION_METRICS",
    "METRIC_LABELS",
    "metric_label",
]

CLASSIFICATION_METRICS = ("restricted_accuracy", "restricted_macro_f1", "accuracy", "macro_f1")
"""The default report columns (the classification task's)."""

METRIC_LABELS = {
    "restricted_accuracy": "acc (own labels)",
    "restricted_macro_f1": "macro-F1 (own)",
    "accuracy": "accuracy",  # VQA's answer accuracy; classification's beside its own-label one: see metric_label
    "macro_f1": "macro-F1 (all)",
    "dice": "Dice",
    "hd95": "HD95",  # mm from the image spacing; phantom sites (no spacing) at 1 mm per pixel
    "pixel_accuracy": "pixel acc",
    "psnr": "PSNR dB",
    "ssim": "SSIM",
    "bicubic_psnr": "bicubic PSNR dB",
    "bicubic_ssim": "bicubic SSIM",
    "closed_accuracy": "closed acc",
    "open_accuracy": "open acc",
    "qabf": "Qabf",
    "vif": "VIF",
    "mi": "MI bits",
    "entropy": "entropy bits",
    "average_qabf": "average Qabf",
    "max_qabf": "max Qabf",
}
"""Column titles of known metrics (others are shown under their own name)."""


def metric_label(metric: str, beside: Sequence[str] = ()) -> str:
    """The column title of ``metric``; ``accuracy`` reads ``acc (all labels)`` when shown ``beside`` the
    classification's accuracy restricted to each site's own labels (a VQA answer accuracy stays ``accuracy``)."""
    if metric == "accuracy" and "restricted_accuracy" in beside:
        return "acc (all labels)"
    return METRIC_LABELS.get(metric, metric)


_UNSCALED = {"psnr", "hd95", "mi", "entropy"}  # not in [0, 1] (dB, pixels, bits): shown as they are, not in %
_BASELINE_PREFIXES = ("bicubic_", "average_", "max_")  # the same metric scored for a baseline


@dataclass
class RunResult:
    """One strategy's finished run: the server's round history and the final per-site evaluation.

    A central reference (trained without rounds, e.g. each site alone to convergence) has an empty
    ``history``: the report shows it without rounds or uploads, the plot as a dashed line.
    """

    strategy: str
    history: list[dict[str, Any]]
    final_metrics: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = float("nan")

    @property
    def sites(self) -> list[str]:
        return sorted(self.final_metrics, key=lambda s: (len(s), s))

    def final_mean(self, metric: str) -> float:
        values = [m[metric] for m in self.final_metrics.values() if metric in m]
        return float(np.mean(values)) if values else float("nan")

    def round_means(self, metric: str) -> list[float]:
        """Per round, the mean over the sites that evaluated the received model that round."""
        means = []
        for record in self.history:
            values = [m[metric] for m in record["metrics"].values() if metric in m]
            means.append(float(np.mean(values)) if values else float("nan"))
        return means

    def last_rounds_mean(self, metric: str, rounds: int = 5) -> float:
        values = [v for v in self.round_means(metric)[-rounds:] if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    def bytes_per_round(self) -> dict[str, float]:
        """Mean upload per participating site per round, from what the server actually accepted."""
        model, spectral = [], []
        for record in self.history:
            for accepted in record["accepted"].values():
                model.append(accepted["model_bytes"])
                spectral.append(accepted["spectral_bytes"])
        return {
            "model": float(np.mean(model)) if model else 0.0,
            "spectral": float(np.mean(spectral)) if spectral else 0.0,
        }


def load_run(state_root: str, strategy: str | None = None, wall_seconds: float = float("nan")) -> RunResult:
    """Load ``<state_root>/server/{server_state,final_metrics}.json`` and ``settings.json``.

    Raises:
        FileNotFoundError: the run did not finish (no final metrics): look at the simulator log.
    """
    server = os.path.join(state_root, "server")
    final_path = os.path.join(server, "final_metrics.json")
    if not os.path.isfile(final_path):
        raise FileNotFoundError(f"{final_path} is missing: the run did not finish.")
    with open(os.path.join(server, "server_state.json")) as f:
        state = json.load(f)
    with open(final_path) as f:
        final = json.load(f)
    settings = {}
    if os.path.isfile(os.path.join(state_root, "settings.json")):
        with open(os.path.join(state_root, "settings.json")) as f:
            settings = json.load(f)
    return RunResult(strategy or state["strategy"], state["history"], final["metrics"], settings, wall_seconds)


def comparison_rows(
    results: list[RunResult], metrics: tuple[str, ...] = CLASSIFICATION_METRICS, headline: str | None = None
) -> list[dict[str, Any]]:
    """One row per strategy: mean final ``metrics`` over sites, the headline per site and over the last 5 rounds.

    ``headline`` defaults to the first metric.
    """
    headline = headline or metrics[0]
    rows = []
    for result in results:
        row: dict[str, Any] = {"strategy": result.strategy, "rounds": len(result.history), "headline": headline}
        for metric in metrics:
            row[f"mean_{metric}"] = result.final_mean(metric)
        row[f"last5_{headline}"] = result.last_rounds_mean(headline)
        row[f"per_site_{headline}"] = {s: result.final_metrics[s].get(headline, float("nan")) for s in result.sites}
        row["majority_rate"] = result.final_mean("majority_rate")
        row["wall_seconds"] = result.wall_seconds
        row["upload_bytes_per_site_round"] = result.bytes_per_round()
        rows.append(row)
    return rows


def _is_unscaled(metric: str) -> bool:
    for prefix in _BASELINE_PREFIXES:
        metric = metric.removeprefix(prefix)
    return metric in _UNSCALED


def metric_scale(metric: str) -> float:
    """What a report multiplies ``metric`` by: 100 for metrics in [0, 1] (shown in %), 1 for dB, mm and bits."""
    return 1.0 if _is_unscaled(metric) else 100.0


def metric_unit(metric: str) -> str:
    """The unit of a difference in ``metric`` as reports show it: "points" (of %), or the metric's own unit."""
    for prefix in _BASELINE_PREFIXES:
        metric = metric.removeprefix(prefix)
    return {"psnr": "dB", "hd95": "mm", "mi": "bits", "entropy": "bits"}.get(metric, "points")


def format_metric(metric: str, value: float) -> str:
    """``value`` as the report shows it: % for metrics in [0, 1], else two decimals; ``n/a`` if not finite."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if _is_unscaled(metric) else f"{100 * value:.1f}"


def markdown_table(rows: list[dict[str, Any]], metrics: tuple[str, ...] = CLASSIFICATION_METRICS) -> str:
    """The comparison as a Markdown table: ``metrics``, the headline over the last 5 rounds and per site, cost."""
    if not rows:
        return "(no finished runs)"
    headline = rows[0]["headline"]
    sites = sorted({s for r in rows for s in r[f"per_site_{headline}"]}, key=lambda s: (len(s), s))
    header = (
        ["strategy", *(metric_label(m, metrics) for m in metrics), f"last-5 {metric_label(headline, metrics)}"]
        + sites
        + ["rounds", "wall s", "model KB/round", "spectral B/round"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        upload = r["upload_bytes_per_site_round"]
        cells = [
            r["strategy"],
            *(format_metric(m, r[f"mean_{m}"]) for m in metrics),
            format_metric(headline, r[f"last5_{headline}"]),
            *[format_metric(headline, r[f"per_site_{headline}"].get(s, float("nan"))) for s in sites],
            str(r["rounds"]) if r["rounds"] else "-",
            f"{r['wall_seconds']:.0f}",
            f"{upload['model'] / 1024:.0f}" if r["rounds"] else "-",
            f"{upload['spectral']:.0f}" if r["rounds"] else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    majority = [r["majority_rate"] for r in rows if np.isfinite(r["majority_rate"])]
    if majority:
        lines += ["", f"Majority-class rate (mean over sites): {format_metric('accuracy', float(np.mean(majority)))}%."]
    return "\n".join(lines)


def verdict_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What wins, in plain words: the best row by the headline, and OmniFM against every row without rounds
    (the central references) and against the best other federated strategy."""
    scored = [r for r in rows if np.isfinite(r[f"mean_{r['headline']}"])]
    if not scored:
        return ["No finished run to compare."]
    headline = scored[0]["headline"]
    label = metric_label(headline)

    def value(r: dict[str, Any]) -> float:
        return r[f"mean_{headline}"]

    best = max(scored, key=value)
    lines = [f"Best by {label}: {best['strategy']} ({format_metric(headline, value(best))})."]
    omni = next((r for r in scored if r["strategy"] == "omnifm"), None)
    if omni is None:
        return lines
    others = [r for r in scored if r["rounds"] and r["strategy"] != "omnifm"]
    versus = [r for r in scored if not r["rounds"]] + ([max(others, key=value)] if others else [])
    for r in versus:
        gap = value(omni) - value(r)
        shown = f"{gap:+.2f}" if _is_unscaled(headline) else f"{100 * gap:+.1f} points"
        word = "above" if gap > 0 else "below" if gap < 0 else "level with"
        lines.append(f"OmniFM vs {r['strategy']}: {shown} ({word}).")
    return lines


def write_report(
    results: list[RunResult],
    out_dir: str,
    title: str,
    notes: str = "",
    metrics: tuple[str, ...] = CLASSIFICATION_METRICS,
    headline: str | None = None,
) -> dict[str, str]:
    """Write ``results.json``, ``report.md`` and ``convergence.png`` under ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    rows = comparison_rows(results, metrics, headline)
    paths = {
        "json": os.path.join(out_dir, "results.json"),
        "markdown": os.path.join(out_dir, "report.md"),
        "plot": os.path.join(out_dir, "convergence.png"),
    }
    with open(paths["json"], "w") as f:
        json.dump({"title": title, "rows": rows, "settings": [r.settings for r in results]}, f, indent=1)
    with open(paths["markdown"], "w") as f:
        verdict = "\n".join(f"- {line}" for line in verdict_lines(rows))
        table = markdown_table(rows, metrics)
        f.write(f"# {title}\n\n{notes}\n\n{table}\n\n{verdict}\n\n![convergence](convergence.png)\n")
    _plot_convergence(results, paths["plot"], rows[0]["headline"] if rows else metrics[0])
    return paths


def _plot_convergence(results: list[RunResult], path: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for result in results:
        if not result.history:  # a central reference: its final value as a dashed line
            final = result.final_mean(metric)
            if np.isfinite(final):
                ax.axhline(float(format_metric(metric, final)), linestyle="--", linewidth=1, label=result.strategy)
            continue
        means = [float(format_metric(metric, m)) if np.isfinite(m) else np.nan for m in result.round_means(metric)]
        ax.plot(range(1, len(means) + 1), means, marker="o", label=result.strategy)
    ax.set_xlabel("round (metric of the model each site received)")
    unit = "" if _is_unscaled(metric) else " (%)"
    ax.set_ylabel(f"mean over sites: {metric_label(metric)}{unit}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
