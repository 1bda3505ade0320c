"""Read finished federated runs and write the comparison report (JSON, Markdown, PNG)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunResult", "load_run", "comparison_rows", "markdown_table", "write_report"]

HEADLINE = ("restricted_accuracy", "restricted_macro_f1", "accuracy", "macro_f1")


@dataclass
class RunResult:
    """One strategy's finished run: the server's round history and the final per-site evaluation."""

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


def comparison_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per strategy: per-site and mean final metrics, last-5-rounds mean, cost."""
    rows = []
    for result in results:
        row: dict[str, Any] = {"strategy": result.strategy, "rounds": len(result.history)}
        for metric in HEADLINE:
            row[f"mean_{metric}"] = result.final_mean(metric)
        row["last5_restricted_accuracy"] = result.last_rounds_mean("restricted_accuracy")
        row["per_site_restricted_accuracy"] = {
            s: result.final_metrics[s].get("restricted_accuracy", float("nan")) for s in result.sites
        }
        row["majority_rate"] = result.final_mean("majority_rate")
        row["wall_seconds"] = result.wall_seconds
        row["upload_bytes_per_site_round"] = result.bytes_per_round()
        rows.append(row)
    return rows


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (accuracies in %)."""
    sites = sorted({s for r in rows for s in r["per_site_restricted_accuracy"]}, key=lambda s: (len(s), s))
    header = (
        ["strategy", "acc (own labels)", "macro-F1 (own)", "acc (all labels)", "macro-F1 (all)", "last-5 acc"]
        + sites
        + ["rounds", "wall s", "model KB/round", "spectral B/round"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        upload = r["upload_bytes_per_site_round"]
        cells = [
            r["strategy"],
            _pct(r["mean_restricted_accuracy"]),
            _pct(r["mean_restricted_macro_f1"]),
            _pct(r["mean_accuracy"]),
            _pct(r["mean_macro_f1"]),
            _pct(r["last5_restricted_accuracy"]),
            *[_pct(r["per_site_restricted_accuracy"].get(s, float("nan"))) for s in sites],
            str(r["rounds"]),
            f"{r['wall_seconds']:.0f}",
            f"{upload['model'] / 1024:.0f}",
            f"{upload['spectral']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    majority = np.nanmean([r["majority_rate"] for r in rows]) if rows else float("nan")
    lines.append("")
    lines.append(f"Majority-class rate (mean over sites): {_pct(majority)}%.")
    return "\n".join(lines)


def write_report(results: list[RunResult], out_dir: str, title: str, notes: str = "") -> dict[str, str]:
    """Write ``results.json``, ``report.md`` and ``convergence.png`` under ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    rows = comparison_rows(results)
    paths = {
        "json": os.path.join(out_dir, "results.json"),
        "markdown": os.path.join(out_dir, "report.md"),
        "plot": os.path.join(out_dir, "convergence.png"),
    }
    with open(paths["json"], "w") as f:
        json.dump({"title": title, "rows": rows, "settings": [r.settings for r in results]}, f, indent=1)
    with open(paths["markdown"], "w") as f:
        f.write(f"# {title}\n\n{notes}\n\n{markdown_table(rows)}\n\n![convergence](convergence.png)\n")
    _plot_convergence(results, paths["plot"])
    return paths


def _plot_convergence(results: list[RunResult], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for result in results:
        means = result.round_means("restricted_accuracy")
        ax.plot(range(1, len(means) + 1), [100 * m for m in means], marker="o", label=result.strategy)
    ax.set_xlabel("round (metric of the model each site received)")
    ax.set_ylabel("mean test accuracy, own labels (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
