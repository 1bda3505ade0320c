"""Cross-site evaluation after a simulated run: every site's final model on every site's test split.

Row ``i``, column ``j`` of the matrix is site ``i``'s final model, exactly as site ``i`` scores it (the
final global state and the prototypes the server retrieves for ``i``, loaded over ``i``'s private state
by :class:`~omnifm_monai.flare.client.SiteTrainer`, with the strategy's ``on_receive``: BatchNorm
recalibration on ``i``'s own training data), scored with the task's metrics on site ``j``'s test split
(``j``'s ``test_evaluator``: its label space). The diagonal is each site's own final score.

Why not NVFlare's ``CrossSiteModelEval``: that workflow asks every site for its local model and sends it
to every other site. A personalised model's private parts (the suffix c, FedBN's norms, FedPer's head,
Ditto's personal model) would then leave their site, which the design forbids (docs/method.md). This
module instead rebuilds the models where a simulation keeps every site's private folder on one machine
(``<state_root>/<site>``): a diagnostic of the simulator and of POC, never of a production federation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from omnifm_monai.jobs.builder import (
    build_network,
    bundle_root,
    client_args,
    compact_json,
    federation_for,
    job_site_names,
    site_label_space,
)
from omnifm_monai.jobs.settings import JobSettings

__all__ = ["CROSS_SITE_FILE", "cross_site_markdown", "cross_site_matrix", "cross_site_section", "final_server_core",
           "final_site_trainers", "load_settings", "plot_cross_site", "run_cross_site", "site_trainer"]  # fmt: skip

CROSS_SITE_FILE = "cross_site.json"


def load_settings(state_root: str) -> JobSettings:
    """The run's ``<state_root>/settings.json``, its ``state_root`` set to ``state_root``.

    Raises:
        FileNotFoundError: naming the file, when the run saved no settings.
    """
    path = os.path.join(state_root, "settings.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: not the state root of a finished run.")
    with open(path) as f:
        settings = JobSettings(**json.load(f))
    settings.state_root = state_root
    return settings


def _label_space(settings: JobSettings) -> tuple[tuple[str, ...], int]:
    if settings.dataset_dir:
        return site_label_space(settings, job_site_names(settings))
    federation = federation_for(settings)
    return tuple(getattr(federation, "class_names", ())), federation.num_classes


def final_site_trainers(settings: JobSettings, scratch_dir: str) -> dict[str, Any]:
    """``{site: SiteTrainer}``, each holding the site's final model as it scored it in the final evaluation.

    The server's persisted state (:class:`~omnifm_monai.flare.server_core.ServerCore`) gives each site its
    final payload; each site's trainer is built from the job's own client arguments and restores its private
    and training state from ``settings.site_dir(site)`` (only read there: checkpoints and events of the
    rebuild go under ``scratch_dir``), then :meth:`SiteTrainer.receive` the payload.

    Raises:
        FileNotFoundError: the server saved no state under ``settings.server_state_dir()``.
    """
    core, class_names, num_classes = final_server_core(settings)
    trainers = {}
    for site in job_site_names(settings):
        trainer = site_trainer(settings, site, class_names, num_classes, os.path.join(scratch_dir, site))
        trainer.receive(*core.payload(site))  # right after the restore of the site's random streams
        trainers[site] = trainer
    return trainers


def final_server_core(settings: JobSettings):
    """``(core, class_names, num_classes)``: the run's :class:`~omnifm_monai.flare.server_core.ServerCore` as
    persisted after its last round (the final global state, the knowledge base), and the federation's labels.

    Raises:
        FileNotFoundError: the server saved no state under ``settings.server_state_dir()``.
    """
    from omnifm_monai.flare.server_core import ServerCore

    class_names, num_classes = _label_space(settings)
    network, strategy = build_network(settings, num_classes)
    initial = {k: v.detach().cpu().numpy() for k, v in network.state_dict().items()}
    core = ServerCore(strategy, initial, strategy.private_keys(network), **settings.server_options)
    if not core.load(settings.server_state_dir()):
        raise FileNotFoundError(f"no server state under {settings.server_state_dir()}: the run did not save one.")
    return core, class_names, num_classes


def site_trainer(settings: JobSettings, site: str, class_names, num_classes: int, scratch_dir: str):
    """The :class:`~omnifm_monai.flare.client.SiteTrainer` the job runs at ``site`` (its client arguments), its
    private state read from ``settings.site_dir(site)``; checkpoints and events go under ``scratch_dir``."""
    from omnifm_monai.flare.client import SiteTrainer, parse_args

    args = parse_args(client_args(settings, site, num_classes, class_names).split(" "))
    args.bundle_root = str(bundle_root(settings.task))
    scratch = os.path.abspath(scratch_dir)
    outputs = {"ckpt_dir": os.path.join(scratch, "models"), "output_dir": os.path.join(scratch, "eval")}
    outputs["tensorboard_dir"] = os.path.join(scratch, "eval", "tensorboard")
    args.bundle_overrides = compact_json({**settings.bundle_overrides, **outputs})
    return SiteTrainer(args, site)


def cross_site_matrix(
    models: Mapping[str, Any], evaluators: Mapping[str, Callable[[Any], dict[str, float]]], metric: str
) -> dict[str, Any]:
    """Score every model on every site's test split.

    Args:
        models: ``{site: the model the site scores}`` (rows).
        evaluators: ``{site: network -> metrics on that site's test split}`` (columns).
        metric: the metric kept in the matrix (the task's headline).

    Returns:
        ``{"metric", "models": [row sites], "test_sites": [column sites], "matrix": (R, C) nested list,
        "metrics": {model site: {test site: every metric}}}``.
    """
    rows, columns = list(models), list(evaluators)
    metrics = {i: {j: dict(evaluators[j](models[i])) for j in columns} for i in rows}
    matrix = [[float(metrics[i][j].get(metric, float("nan"))) for j in columns] for i in rows]  # (R, C)
    return {"metric": metric, "models": rows, "test_sites": columns, "matrix": matrix, "metrics": metrics}


def cross_site_markdown(result: Mapping[str, Any]) -> str:
    """The matrix as a Markdown table: one row per model, one column per test split, plus the off-diagonal mean."""
    from omnifm_monai.reporting import format_metric, metric_label

    metric, columns = result["metric"], result["test_sites"]
    label = metric_label(metric)
    header = [f"model \\ test ({label})", *columns, "mean on other sites"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for site, values in zip(result["models"], result["matrix"]):
        others = [v for j, v in zip(columns, values) if j != site and np.isfinite(v)]
        cells = [site, *(format_metric(metric, v) for v in values)]
        cells.append(format_metric(metric, float(np.mean(others)) if others else float("nan")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_cross_site(result: Mapping[str, Any], path: str, title: str = "") -> None:
    """A heatmap of the matrix (rows: models, columns: test splits), values as the report shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from omnifm_monai.reporting import format_metric, metric_label

    metric = result["metric"]
    matrix = np.asarray(result["matrix"], dtype=float)  # (R, C)
    shown = np.array([[float(format_metric(metric, v)) if np.isfinite(v) else np.nan for v in r] for r in matrix])
    rows, columns = result["models"], result["test_sites"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(columns), 1.0 + 0.6 * len(rows)), dpi=120)
    image = ax.imshow(shown, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            ax.text(j, i, format_metric(metric, matrix[i, j]), ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("test split of")
    ax.set_ylabel("final model of")
    ax.set_title(title or metric_label(metric), fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_cross_site(state_root: str, out_dir: str, title: str = "") -> dict[str, Any]:
    """Rebuild a finished run's final models, score them site by site, write ``cross_site.json`` and
    ``cross_site.png`` under ``out_dir``; returns the result with ``"json"``, ``"plot"`` and ``"markdown"``."""
    from omnifm_monai.tasks import get_task

    settings = load_settings(state_root)
    os.makedirs(out_dir, exist_ok=True)
    trainers = final_site_trainers(settings, os.path.join(out_dir, "cross_site_scratch"))
    models = {site: t.evaluation_network() for site, t in trainers.items()}
    evaluators = {site: t.score_on_test for site, t in trainers.items()}
    result = cross_site_matrix(models, evaluators, get_task(settings.task).headline_metric)
    result["strategy"] = settings.strategy
    paths = {"json": os.path.join(out_dir, CROSS_SITE_FILE), "plot": os.path.join(out_dir, "cross_site.png")}
    with open(paths["json"], "w") as f:
        json.dump(result, f, indent=1)
    plot_cross_site(result, paths["plot"], title or f"{settings.strategy}: final model x test split")
    return {**result, **paths, "markdown": cross_site_markdown(result)}


def cross_site_section(results: Mapping[str, Mapping[str, Any]], report_dir: str) -> str:
    """The report's "Cross-site evaluation" section: per strategy, its table and heatmap (paths relative to
    ``report_dir``, where ``report.md`` is)."""
    lines = [
        "## Cross-site evaluation",
        "",
        "Row: a site's final model as that site scores it (global state, its private state, its BatchNorm "
        "recalibration); column: the test split it is scored on. The diagonal is the site's own final score.",
    ]
    for label, result in results.items():
        plot = os.path.relpath(result["plot"], report_dir)
        lines += ["", f"### {label}", "", result["markdown"], "", f"![cross-site {label}]({plot})"]
    return "\n".join(lines) + "\n"
