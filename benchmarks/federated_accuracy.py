"""Benchmark: the paper's accuracy comparison through the NVFlare pipeline, over seeds and participation rates.

For every participation rate and seed this runs, each as its own NVFlare simulation with the same
classification bundle, budget (rounds x local epochs) and federation:

- the strategies (``--strategies``: local-only, FedAvg, FedProx, FedPer, FedBN, OmniFM);
- with ``--ablations``, OmniFM with one component added (the spectral path, off by default) or removed in turn
  (:data:`ABLATIONS`);
- with ``--sweeps``, OmniFM with the spectral path and one of its settings changed in turn (:data:`SWEEPS`:
  SPAlign weight lambda, retrieval k, the tokenizer's low-pass cutoff, prototypes sent per site);
- with ``--variants``, any labelled strategy with its own job options (an investigation's candidates);
- with ``--dp-noise Z``, OmniFM with the spectral path and every site's spectral upload clipped and noised (noise
  multiplier ``Z``, :class:`~omnifm_monai.flare.privacy.SpectralTokenPrivacy`): the accuracy cost of DP;
- with ``--centralised``, the pooled reference: the same bundle trained on every site's training
  data together for ``rounds x local_epochs x participation`` epochs (the passes each site makes
  over its own data), scored on each site's own test split;
- with ``--unseen-modality M``, the unseen-modality protocol (:mod:`omnifm_monai.jobs.unseen_modality`):
  every run trains without modality ``M`` (``--modalities``: the others), then one site of ``M`` joins and is
  scored with the final global model as received and after ``--adapt-epochs`` epochs adapting only its
  private parts;
- with ``--references``, the fair references (:mod:`omnifm_monai.jobs.references`): each site alone and
  all sites pooled, each trained to convergence (early stopping on its own validation split, patience
  ``--patience``, the same cap ``--reference-epochs`` for both), once per seed.

For every strategy it also writes the paired differences over seeds (same seed, same partition) against
each convergence reference and against OmniFM, with a 95 % t confidence interval.

It reports, per configuration, the mean and the spread (sample standard deviation) over seeds of
the mean per-site test score of every metric of the task (``--task``, forwarded to the jobs; for
classification: accuracy restricted to each site's own label space (the headline) and over all labels,
the macro-F1 and the majority-class rate; for the other tasks their ``report_metrics``, headline first),
the headline over the last 5 rounds, and checks the benchmark issues' goals at each participation rate
(paired differences and goals in % points, or in dB / mm / bits for metrics that are not fractions),
with the headline on each site's validation split (``val_<headline>``: what settings are chosen on).
Writes ``results.json``, ``results.md`` and ``accuracy.png`` under ``--out``. Usage::

    python benchmarks/federated_accuracy.py --clients 10 --rounds 10 --participation 0.2 1.0 --seeds 0 1 2 \\
        --ablations --centralised --out runs/benchmarks/accuracy
    python benchmarks/federated_accuracy.py --federation-data ../shared/data/medmnist --image-size 28 ...
    # the fixed task on real files: one triage question, one modality per site, unequal sites
    python benchmarks/federated_accuracy.py --federation-data ../shared/data/medmnist:../shared/data/real/\
classification_shared_label --label-map benchmarks/label_maps/medmnist_triage.json \
        --scenario cross_modality_shared --site-sizes 400,400,400,60,60,60 --clients 6 --references ...
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
from pathlib import Path

import numpy as np
from _common import benchmark_parser, machine_info, option_list, paired_difference, write_report

from omnifm_monai.jobs import parse_job_args, run_strategy
from omnifm_monai.jobs.references import (
    LOCAL_CONVERGED,
    POOLED_CONVERGED,
    REFERENCE_LABELS,
    local_to_convergence,
    pooled_to_convergence,
)
from omnifm_monai.jobs.unseen_modality import (
    DEFAULT_ADAPT_EPOCHS,
    score_unseen_modality,
    training_modalities,
    unseen_markdown,
)
from omnifm_monai.jobs.variants import load_variants, strategy_runs
from omnifm_monai.reporting import metric_label, metric_scale, metric_unit

__all__ = ["ABLATIONS", "CENTRALISED", "METRICS", "STRATEGIES", "SWEEPS", "converged_references", "finished_run",
           "goals", "load_variants", "main", "paired_rows", "parse_args", "plot", "pooled_centralised", "record_run",
           "run", "strategy_fields", "summarise", "table_rows", "task_metrics", "to_markdown"]  # fmt: skip

STRATEGIES = ("local", "fedavg", "fedprox", "fedper", "fedbn", "omnifm")
SPECTRAL_PATH = '{"spectral":true}'  # OmniFM's spectral path (ECA, GSKR, SPAlign): an option, off in omnifm
ABLATIONS: dict[str, list[str]] = {
    # label -> extra job arguments on top of --strategy omnifm (the default has no spectral path)
    "omnifm + ECA+GSKR": ["--strategy-options", SPECTRAL_PATH],  # the paper's spectral path added
    "omnifm + ECA w/o GSKR": ["--strategy-options", SPECTRAL_PATH, "--server-options", '{"prototypes_per_site":0}'],
    "omnifm + ECA+GSKR w/o SPAlign": [
        "--strategy-options",
        SPECTRAL_PATH,
        "--bundle-overrides",
        '{"spalign_weight":0}',
    ],
    "omnifm w/o PSP suffix": ["--strategy-options", '{"prompt":false}'],
    "omnifm w/o norm recalibration": ["--strategy-options", '{"recalibrate_norms":false}'],
}
SWEEPS: dict[str, list[str]] = {
    # label -> extra job arguments on top of --strategy omnifm with the spectral path
    # (its defaults: lambda 0.1, k 8, cutoff 0.1, 64 prototypes)
    f"omnifm + ECA+GSKR {label}": ["--strategy-options", SPECTRAL_PATH, *extra]
    for label, extra in {
        "lambda=0.01": ["--bundle-overrides", '{"spalign_weight":0.01}'],
        "lambda=1": ["--bundle-overrides", '{"spalign_weight":1.0}'],
        "k=2": ["--server-options", '{"retrieval_k":2}'],
        "k=32": ["--server-options", '{"retrieval_k":32}'],
        "cutoff=0.05": ["--bundle-overrides", '{"network_def#spectral_options#cutoff":0.05}'],
        "cutoff=0.3": ["--bundle-overrides", '{"network_def#spectral_options#cutoff":0.3}'],
        "8 prototypes per site": ["--server-options", '{"prototypes_per_site":8}'],
    }.items()
}
METRICS = ("restricted_accuracy", "accuracy", "restricted_macro_f1", "macro_f1")
"""Classification's metrics (its task's ``report_metrics``); other tasks use theirs (:func:`task_metrics`)."""
CENTRALISED = "pooled centralised"


def task_metrics(task_name: str) -> tuple[str, tuple[str, ...]]:
    """``(headline, metrics)`` the benchmark reports for ``--task``: the task's headline metric and its
    ``report_metrics`` (classification: accuracy on each site's own labels first)."""
    from omnifm_monai.tasks import get_task

    task = get_task(task_name)
    return task.headline_metric, tuple(task.report_metrics)


def _report_metrics(report: dict) -> tuple[str, tuple[str, ...]]:
    """The report's ``(headline, metrics)``; reports written before other tasks were benchmarked are
    classification's."""
    return report.get("headline", "restricted_accuracy"), tuple(report.get("metrics", METRICS))


def pooled_centralised(job_args: list[str], out_dir: str) -> dict[str, dict[str, float]]:
    """Train the bundle on the pooled training data; the per-site test metrics ``{site: {metric: value}}``.

    The budget matches the federation's: ``rounds x local_epochs x participation`` epochs, the number of
    passes each site makes over its own data when it trains in a fraction ``participation`` of the rounds.
    """
    settings, _ = parse_job_args(job_args)
    budget = max(1, round(settings.num_rounds * settings.local_epochs * settings.participation))

    def train() -> dict:
        return pooled_to_convergence(settings, out_dir, max_epochs=budget, patience=0)[0]

    return _cached(Path(out_dir) / "per_site_metrics.json", job_args, train)


def _cached(path: Path, key, compute):
    """``compute()``'s result, kept in ``path`` with ``key``: a restarted benchmark reuses a finished one."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("job_args") == key:
        return earlier["metrics"]
    metrics = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"job_args": key, "metrics": metrics}, indent=1, default=float))
    return metrics


def converged_references(job_args: list[str], out_dir: str, *, max_epochs: int, patience: int) -> dict[str, dict]:
    """``{LOCAL_CONVERGED: {site: metrics}, POOLED_CONVERGED: {site: metrics}}``, both to convergence.

    Each site alone and all sites pooled, early stopping on the validation split of their own training
    data, the same epoch cap ``max_epochs`` (:mod:`omnifm_monai.jobs.references`).
    """
    settings, _ = parse_job_args(job_args)
    options = {"max_epochs": max_epochs, "patience": patience}
    key = [*job_args, f"max_epochs={max_epochs}", f"patience={patience}"]
    runs = {LOCAL_CONVERGED: (local_to_convergence, "local"), POOLED_CONVERGED: (pooled_to_convergence, "pooled")}
    result = {}
    for label, (train, folder) in runs.items():
        where = os.path.join(out_dir, folder)
        per_site = functools.partial(lambda f, w: f(settings, w, **options)[0], train, where)
        result[label] = _cached(Path(where) / "per_site_metrics.json", key, per_site)
    return result


RUN_RECORD = "benchmark_run.json"
"""Written beside each finished run: the job options it ran with and its wall time."""


def finished_run(out: str, folder: str, job_args: list[str] | None = None, strategy: str = ""):
    """``(result, [])`` of a run that already finished under ``out/folder``, else ``(None, [])``.

    With ``job_args``, a run whose :data:`RUN_RECORD` names other job options does not count (a restarted
    benchmark with changed options runs it again); with ``strategy`` (:func:`strategy_fields`), neither does
    one recorded with other strategy fields or none (a code change of a strategy's defaults runs it again).
    Its wall time comes from the record (NaN without one).
    """
    from omnifm_monai.reporting import load_run

    record_path = Path(out, folder, RUN_RECORD)
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if job_args is not None and record and record.get("job_args") != list(job_args):
        return None, []
    if strategy and record and record.get("strategy") != strategy:
        return None, []
    try:
        return load_run(os.path.join(out, folder, "state"), folder, record.get("wall_seconds", float("nan"))), []
    except FileNotFoundError:
        return None, []


def record_run(out: str, folder: str, job_args: list[str], wall_seconds: float, strategy: str = "") -> None:
    """Write ``out/folder/``:data:`RUN_RECORD` for :func:`finished_run`."""
    record = {"job_args": list(job_args), "wall_seconds": wall_seconds, "strategy": strategy}
    Path(out, folder, RUN_RECORD).write_text(json.dumps(record))


def strategy_fields(strategy: str, options: dict) -> str:
    """The resolved strategy a run trains with (every field, defaults included), as the run record keeps it."""
    from omnifm_monai.strategies import get_strategy

    return repr(get_strategy(strategy, **options))


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 with one value) of finite values."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": spread, "n": len(finite)}


def _site_mean(per_site: dict[str, dict], metric: str) -> float:
    """``metric`` averaged over the sites that report it (NaN when none does)."""
    values = [s[metric] for s in per_site.values() if metric in s]
    return float(np.mean(values)) if values else float("nan")


def _reference_record(
    participation: float, seed: int, label: str, per_site: dict[str, dict], metrics: tuple[str, ...]
) -> dict:
    """A run record of a central reference: each metric averaged over the sites (``val_<metric>`` where the
    sites report it: references trained before 2026-12-04 did not)."""
    record = {"participation": participation, "seed": seed, "label": label, "problems": []}
    record.update({m: _site_mean(per_site, m) for m in (*metrics, "majority_rate")})
    record.update({f"val_{m}": _site_mean(per_site, f"val_{m}") for m in metrics})
    return record


def run(args: argparse.Namespace, forwarded: list[str]) -> dict:
    runs, converged = [], {}
    headline, metrics = task_metrics(parse_job_args(forwarded)[0].task)
    for participation in args.participation:
        for seed in args.seeds:
            options = {
                "--clients": args.clients, "--rounds": args.rounds, "--local-epochs": args.local_epochs,
                "--image-size": args.image_size, "--participation": participation, "--seed": seed,
                "--threads": args.threads,
            }  # fmt: skip
            base = [*option_list(options), *forwarded]
            if args.samples_per_client:
                base += ["--samples-per-client", str(args.samples_per_client)]
            if args.unseen_modality:  # train without it (the job's last --modalities wins)
                kept = training_modalities(parse_job_args(base)[0], args.unseen_modality)
                base += ["--modalities", ",".join(kept)]
            out = os.path.join(args.out, f"p{participation}_s{seed}")
            variants = {}  # label -> [strategy, job options...], run after the strategies
            if args.ablations:
                variants |= {label: ["omnifm", *extra] for label, extra in ABLATIONS.items()}
            if args.sweeps:
                variants |= {label: ["omnifm", *extra] for label, extra in SWEEPS.items()}
            variants |= args.variants
            if args.dp_noise > 0:
                dp = ["--strategy-options", SPECTRAL_PATH, "--spectral-dp-noise", str(args.dp_noise)]
                variants[f"omnifm + ECA+GSKR, spectral DP z={args.dp_noise:g}"] = ["omnifm", *dp]
            for run in strategy_runs(args.strategies, variants):
                label, strategy, folder = run.label, run.strategy, run.folder
                job_args = [*base, *run.job_args]
                settings, _ = parse_job_args(job_args)
                print(f"participation {participation}, seed {seed}: {label}", flush=True)
                fields = strategy_fields(strategy, settings.strategy_options)
                result, problems = finished_run(out, folder, job_args, fields)
                if result is None:  # not run yet (a restarted benchmark keeps the runs that finished)
                    result, problems = run_strategy(strategy, job_args, settings, out, label=label)
                    if result is not None:
                        record_run(out, folder, job_args, result.wall_seconds, fields)
                record = {"participation": participation, "seed": seed, "label": label, "problems": problems[:5]}
                if result is not None:
                    record.update({m: result.final_mean(m) for m in metrics})
                    record[f"last5_{headline}"] = result.last_rounds_mean(headline)
                    record[f"val_{headline}"] = result.final_mean(f"val_{headline}")  # what settings are chosen on
                    record["majority_rate"] = result.final_mean("majority_rate")
                    record["wall_seconds"] = result.wall_seconds
                    if args.unseen_modality:
                        where = os.path.join(out, folder)
                        record["unseen"] = score_unseen_modality(
                            os.path.join(where, "state"), args.unseen_modality, os.path.join(where, "unseen"),
                            args.adapt_epochs,
                        )  # fmt: skip
                runs.append(record)
            if args.centralised:
                print(f"participation {participation}, seed {seed}: {CENTRALISED}", flush=True)
                per_site = pooled_centralised(base, os.path.join(out, "centralised"))
                runs.append(_reference_record(participation, seed, CENTRALISED, per_site, metrics))
            if args.references:  # independent of participation: trained once per seed
                if seed not in converged:
                    print(f"seed {seed}: {LOCAL_CONVERGED}, {POOLED_CONVERGED}", flush=True)
                    where = os.path.join(args.out, f"s{seed}_references")
                    options = {"max_epochs": args.reference_epochs, "patience": args.patience}
                    converged[seed] = converged_references(base, where, **options)
                for label, per_site in converged[seed].items():
                    runs.append(_reference_record(participation, seed, label, per_site, metrics))
    settings = vars(args) | {"forwarded": forwarded}
    return {"machine": machine_info(), "settings": settings, "headline": headline, "metrics": metrics, "runs": runs}


def table_rows(report: dict) -> list[dict]:
    """One row per (participation, label): mean and spread over seeds of each metric."""
    headline, metrics = _report_metrics(report)
    rows = []
    keys = dict.fromkeys((r["participation"], r["label"]) for r in report["runs"])
    for participation, label in keys:
        runs = [r for r in report["runs"] if r["participation"] == participation and r["label"] == label]
        row = {"participation": participation, "label": label, "failed": sum(1 for r in runs if r["problems"])}
        for metric in (*metrics, f"last5_{headline}", f"val_{headline}", "majority_rate"):
            row[metric] = summarise([r.get(metric, float("nan")) for r in runs])
        rows.append(row)
    return rows


def paired_rows(report: dict, metric: str | None = None) -> list[dict]:
    """Per participation rate, each label against each convergence reference and against OmniFM: the paired
    difference ``label - comparator`` of ``metric`` (default: the report's headline) over the seeds both have
    (same seed, same partition)."""
    metric = metric or _report_metrics(report)[0]
    rows = []
    for participation in dict.fromkeys(r["participation"] for r in report["runs"]):
        by_label: dict[str, dict[int, float]] = {}
        for r in report["runs"]:
            if r["participation"] == participation:
                by_label.setdefault(r["label"], {})[r["seed"]] = r.get(metric, float("nan"))
        comparators = [c for c in (LOCAL_CONVERGED, POOLED_CONVERGED, "omnifm") if c in by_label]
        for label, values in by_label.items():
            for comparator in comparators:
                if comparator == label or label in (LOCAL_CONVERGED, POOLED_CONVERGED):
                    continue  # a reference is only ever the comparator
                seeds = sorted(set(values) & set(by_label[comparator]))
                stat = paired_difference([values[k] for k in seeds], [by_label[comparator][k] for k in seeds])
                rows.append({"participation": participation, "label": label, "versus": comparator, **stat})
    return rows


def _paired_markdown(rows: list[dict], headline: str) -> list[str]:
    if not rows:
        return []
    scale, unit = metric_scale(headline), metric_unit(headline)
    lines = [
        "",
        f"Paired differences over seeds (same seed and partition), {metric_label(headline)}, {unit}; "
        "a difference counts only when its 95 % t interval excludes 0:",
        "",
        "| participation | strategy | versus | mean difference | 95 % CI | seeds | interval excludes 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = scale * r["low"], scale * r["high"]
        interval = "n/a" if not np.isfinite(low) else f"[{low:+.1f}, {high:+.1f}]"
        excludes = "n/a" if not np.isfinite(low) else ("yes" if low > 0 or high < 0 else "no")
        lines.append(
            f"| {r['participation']} | {r['label']} | {r['versus']} | {scale * r['mean']:+.1f} | {interval} "
            f"| {r['n']} | {excludes} |"
        )
    return lines


def _goal_line(participation: float, comparison: str, margin: float, goal: float, unit: str = "points") -> str:
    met = "met" if margin >= goal else "NOT met"
    return f"- participation {participation}: OmniFM vs {comparison}: {margin:+.1f} {unit} (goal >= {goal:+g}): {met}"


def goals(rows: list[dict], headline: str = "restricted_accuracy") -> list[str]:
    """The benchmark issues' goals on the headline metric, checked at each participation rate (in % points, or
    the metric's own unit); the FedAvg all-labels goal is classification's."""
    lines, scale, unit = [], metric_scale(headline), metric_unit(headline)
    for participation in dict.fromkeys(r["participation"] for r in rows):
        by_label = {r["label"]: r for r in rows if r["participation"] == participation}
        if "omnifm" not in by_label:
            continue
        omni = by_label["omnifm"][headline]["mean"]
        baselines = {
            "the best other strategy": lambda k: k in STRATEGIES and k != "omnifm",
            # baselines run with extra options (--variants, e.g. the same BatchNorm recalibration as OmniFM)
            "the best baseline variant": lambda k: (
                k not in STRATEGIES and k not in (CENTRALISED, *REFERENCE_LABELS) and not k.startswith("omnifm")
            ),
        }
        for comparison, chosen in baselines.items():
            scores = {k: v[headline]["mean"] for k, v in by_label.items() if chosen(k)}
            if scores:
                best = max(scores, key=scores.get)
                margin = scale * (omni - scores[best])
                lines.append(_goal_line(participation, f"{comparison} ({best})", margin, 2, unit))
        for reference, goal in ((LOCAL_CONVERGED, 3), (CENTRALISED, -2)):
            if reference in by_label:
                gap = scale * (omni - by_label[reference][headline]["mean"])
                lines.append(_goal_line(participation, reference, gap, goal, unit))
        if "fedavg" in by_label and headline == "restricted_accuracy":
            gap = 100 * (by_label["omnifm"]["accuracy"]["mean"] - by_label["fedavg"]["accuracy"]["mean"])
            lines.append(_goal_line(participation, "FedAvg, all labels", gap, 20))
    return lines


def _cell(stat: dict, metric: str) -> str:
    if not np.isfinite(stat["mean"]):
        return "n/a"
    scale = metric_scale(metric)
    digits = 2 if scale == 1 else 1
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def to_markdown(report: dict) -> str:
    s = report["settings"]
    headline, metrics = _report_metrics(report)
    rows = table_rows(report)
    label = metric_label(headline, metrics)
    optional = {f"val_{headline}": f"val {label}", "majority_rate": "majority rate"}  # shown where measured
    shown = [c for c in optional if any(np.isfinite(r[c]["mean"]) for r in rows)]
    columns = [*metrics, f"last5_{headline}", *shown]
    titles = [*(metric_label(c, metrics) for c in metrics), f"last-5 {label}", *(optional[c] for c in shown)]
    lines = [
        f"{s['clients']} sites, {s['rounds']} rounds x {s['local_epochs']} local epoch(s), "
        f"image size {s['image_size']}, seeds {s['seeds']}, extra job options {s['forwarded'] or 'none'}; "
        f"{report['machine']['date']}. "
        "Mean ± standard deviation over seeds of the mean per-site test score (% unless a unit is named).",
        "",
        "| participation | strategy | " + " | ".join(titles) + " | failed runs |",
        "|---|---|" + "---|" * len(titles) + "---|",
    ]
    for r in rows:
        cells = " | ".join(_cell(r[c], c.removeprefix("last5_").removeprefix("val_")) for c in columns)
        lines.append(f"| {r['participation']} | {r['label']} | {cells} | {r['failed']} |")
    lines += unseen_markdown(report["runs"])
    paired = _paired_markdown(report.get("paired", []), headline)
    return "\n".join([*lines, *paired, "", "Goals:", *goals(rows, headline)])


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    headline, _ = _report_metrics(report)
    scale = metric_scale(headline)
    rows = table_rows(report)
    participations = list(dict.fromkeys(r["participation"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * len(participations)), 4), dpi=120)
    width = 0.8 / max(1, len(participations))
    for i, participation in enumerate(participations):
        stats = {r["label"]: r[headline] for r in rows if r["participation"] == participation}
        means = [scale * stats[k]["mean"] if k in stats else np.nan for k in labels]
        spreads = [scale * stats[k]["std"] if k in stats else 0 for k in labels]
        ax.bar(np.arange(len(labels)) + i * width, means, width, yerr=spreads, label=f"participation {participation}")
    ax.set_xticks(np.arange(len(labels)) + width * (len(participations) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel(f"mean per-site test {metric_label(headline)}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = benchmark_parser(__doc__, job_options=True)
    p.add_argument(
        "--strategies", nargs="*", default=list(STRATEGIES), help="registered strategies (none: only --variants)"
    )
    p.add_argument("--ablations", action="store_true", help="also OmniFM with each component removed")
    p.add_argument("--sweeps", action="store_true", help="also OmniFM with lambda, k, cutoff, prototypes varied")
    p.add_argument(
        "--variants",
        type=load_variants,
        default={},
        help="a JSON file (or JSON text) of label -> [strategy, job options...]; see benchmarks/variants/",
    )
    p.add_argument("--centralised", action="store_true", help="also the pooled-data centralised reference")
    p.add_argument("--references", action="store_true", help="also each site alone and pooled, to convergence")
    p.add_argument("--reference-epochs", type=int, default=40, help="epoch cap of both convergence references")
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without a better val score")
    p.add_argument("--unseen-modality", default="", help="train without this modality, then score a site of it")
    p.add_argument(
        "--adapt-epochs", type=int, default=DEFAULT_ADAPT_EPOCHS, help="epochs the unseen site adapts its private parts"
    )
    p.add_argument("--dp-noise", type=float, default=0.0, help="also OmniFM with DP on the spectral upload")
    p.add_argument("--participation", nargs="+", type=float, default=[0.2, 1.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--samples-per-client", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="simulator threads (default: the number of clients)")
    p.add_argument("--out", default="runs/benchmarks/accuracy")
    args, forwarded = p.parse_known_args(argv)
    args.threads = args.threads or args.clients
    return args, forwarded


def main(argv: list[str] | None = None) -> None:
    args, forwarded = parse_args(argv)
    report = run(args, forwarded)
    report["paired"] = paired_rows(report)
    write_report(args.out, report, to_markdown(report), plots={"accuracy.png": plot}, announce=True)


if __name__ == "__main__":
    main()
