"""Benchmark: the paper's accuracy comparison through the NVFlare pipeline, over seeds and participation rates.

For every participation rate and seed this runs, each as its own NVFlare simulation with the same
classification bundle, budget (rounds x local epochs) and federation:

- the strategies (``--strategies``: local-only, FedAvg, FedProx, FedPer, FedBN, OmniFM);
- with ``--ablations``, OmniFM with one component removed in turn (:data:`ABLATIONS`);
- with ``--sweeps``, OmniFM with one setting changed in turn (:data:`SWEEPS`: SPAlign weight lambda,
  retrieval k, the tokenizer's low-pass cutoff, prototypes sent per site);
- with ``--variants``, any labelled strategy with its own job options (an investigation's candidates);
- with ``--dp-noise Z``, OmniFM with every site's spectral upload clipped and noised (noise
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
the mean per-site test accuracy, restricted to each site's own label space (the headline) and over
all labels, the macro-F1, the mean over the last 5 rounds and the majority-class rate, and checks
the three goals of the benchmark issue at each participation rate. Writes ``results.json``,
``results.md`` and ``accuracy.png`` under ``--out``. Usage::

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
from omnifm_monai.jobs.references import LOCAL_CONVERGED, POOLED_CONVERGED, local_to_convergence, pooled_to_convergence
from omnifm_monai.jobs.unseen_modality import (
    DEFAULT_ADAPT_EPOCHS,
    score_unseen_modality,
    training_modalities,
    unseen_markdown,
)

__all__ = ["ABLATIONS", "CENTRALISED", "METRICS", "STRATEGIES", "SWEEPS", "converged_references", "finished_run",
           "goals", "load_variants", "main", "paired_rows", "parse_args", "plot", "pooled_centralised", "run",
           "summarise", "table_rows", "to_markdown"]  # fmt: skip

STRATEGIES = ("local", "fedavg", "fedprox", "fedper", "fedbn", "omnifm")
ABLATIONS: dict[str, list[str]] = {
    # label -> extra job arguments on top of --strategy omnifm
    "omnifm w/o GSKR": ["--server-options", '{"prototypes_per_site":0}'],  # no retrieved prototypes
    "omnifm w/o ECA+GSKR": ["--strategy-options", '{"spectral":false}'],  # no spectral path at all
    "omnifm w/o PSP suffix": ["--strategy-options", '{"prompt":false}'],
    "omnifm w/o SPAlign": ["--bundle-overrides", '{"spalign_weight":0}'],
    "omnifm w/o norm recalibration": ["--strategy-options", '{"recalibrate_norms":false}'],
}
SWEEPS: dict[str, list[str]] = {
    # label -> extra job arguments on top of --strategy omnifm (defaults: lambda 0.1, k 8, cutoff 0.1, 64 prototypes)
    "omnifm lambda=0.01": ["--bundle-overrides", '{"spalign_weight":0.01}'],
    "omnifm lambda=1": ["--bundle-overrides", '{"spalign_weight":1.0}'],
    "omnifm k=2": ["--server-options", '{"retrieval_k":2}'],
    "omnifm k=32": ["--server-options", '{"retrieval_k":32}'],
    "omnifm cutoff=0.05": ["--bundle-overrides", '{"network_def#spectral_options#cutoff":0.05}'],
    "omnifm cutoff=0.3": ["--bundle-overrides", '{"network_def#spectral_options#cutoff":0.3}'],
    "omnifm 8 prototypes per site": ["--server-options", '{"prototypes_per_site":8}'],
}
METRICS = ("restricted_accuracy", "accuracy", "restricted_macro_f1", "macro_f1")
CENTRALISED = "pooled centralised"


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


def finished_run(out: str, folder: str):
    """``(result, [])`` of a run that already finished under ``out/folder``, else ``(None, [])``."""
    from omnifm_monai.reporting import load_run

    state_root = os.path.join(out, folder, "state")
    try:
        return load_run(state_root, folder), []
    except FileNotFoundError:
        return None, []


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 with one value) of finite values."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": spread, "n": len(finite)}


def _reference_record(participation: float, seed: int, label: str, per_site: dict[str, dict]) -> dict:
    """A run record of a central reference: each metric averaged over the sites."""
    record = {"participation": participation, "seed": seed, "label": label, "problems": []}
    record.update({m: float(np.mean([s[m] for s in per_site.values()])) for m in METRICS})
    record["majority_rate"] = float(np.mean([s["majority_rate"] for s in per_site.values()]))
    return record


def run(args: argparse.Namespace, forwarded: list[str]) -> dict:
    runs, converged = [], {}
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
            variants = [(s, s, []) for s in args.strategies]
            if args.ablations:
                variants += [(label, "omnifm", extra) for label, extra in ABLATIONS.items()]
            if args.sweeps:
                variants += [(label, "omnifm", extra) for label, extra in SWEEPS.items()]
            variants += [(label, strategy, extra) for label, (strategy, *extra) in args.variants.items()]
            if args.dp_noise > 0:
                variants.append(
                    (f"omnifm + spectral DP z={args.dp_noise:g}", "omnifm", ["--spectral-dp-noise", str(args.dp_noise)])
                )
            for label, strategy, extra in variants:
                job_args = [*base, *extra]
                settings, _ = parse_job_args(job_args)
                print(f"participation {participation}, seed {seed}: {label}", flush=True)
                folder = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
                result, problems = finished_run(out, folder)
                if result is None:  # not run yet (a restarted benchmark keeps the runs that finished)
                    result, problems = run_strategy(strategy, job_args, settings, out, label=folder)
                record = {"participation": participation, "seed": seed, "label": label, "problems": problems[:5]}
                if result is not None:
                    record.update({m: result.final_mean(m) for m in METRICS})
                    record["last5_restricted_accuracy"] = result.last_rounds_mean("restricted_accuracy")
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
                runs.append(_reference_record(participation, seed, CENTRALISED, per_site))
            if args.references:  # independent of participation: trained once per seed
                if seed not in converged:
                    print(f"seed {seed}: {LOCAL_CONVERGED}, {POOLED_CONVERGED}", flush=True)
                    where = os.path.join(args.out, f"s{seed}_references")
                    options = {"max_epochs": args.reference_epochs, "patience": args.patience}
                    converged[seed] = converged_references(base, where, **options)
                for label, per_site in converged[seed].items():
                    runs.append(_reference_record(participation, seed, label, per_site))
    return {"machine": machine_info(), "settings": vars(args) | {"forwarded": forwarded}, "runs": runs}


def table_rows(report: dict) -> list[dict]:
    """One row per (participation, label): mean and spread over seeds of each metric."""
    rows = []
    keys = dict.fromkeys((r["participation"], r["label"]) for r in report["runs"])
    for participation, label in keys:
        runs = [r for r in report["runs"] if r["participation"] == participation and r["label"] == label]
        row = {"participation": participation, "label": label, "failed": sum(1 for r in runs if r["problems"])}
        for metric in (*METRICS, "last5_restricted_accuracy", "majority_rate"):
            row[metric] = summarise([r.get(metric, float("nan")) for r in runs])
        rows.append(row)
    return rows


def paired_rows(report: dict, metric: str = "restricted_accuracy") -> list[dict]:
    """Per participation rate, each label against each convergence reference and against OmniFM: the paired
    difference ``label - comparator`` of ``metric`` over the seeds both have (same seed, same partition)."""
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


def _paired_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "Paired differences over seeds (same seed and partition), acc (own labels), points; a difference "
        "counts only when its 95 % t interval excludes 0:",
        "",
        "| participation | strategy | versus | mean difference | 95 % CI | seeds | interval excludes 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = "n/a" if not np.isfinite(r["low"]) else f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
        excludes = "n/a" if not np.isfinite(r["low"]) else ("yes" if r["low"] > 0 or r["high"] < 0 else "no")
        lines.append(
            f"| {r['participation']} | {r['label']} | {r['versus']} | {100 * r['mean']:+.1f} | {interval} "
            f"| {r['n']} | {excludes} |"
        )
    return lines


def _goal_line(participation: float, comparison: str, margin: float, goal: float) -> str:
    met = "met" if margin >= goal else "NOT met"
    return f"- participation {participation}: OmniFM vs {comparison}: {margin:+.1f} points (goal >= {goal:+g}): {met}"


def goals(rows: list[dict]) -> list[str]:
    """The benchmark issue's three goals, checked at each participation rate (restricted metric in points)."""
    lines = []
    for participation in dict.fromkeys(r["participation"] for r in rows):
        by_label = {r["label"]: r for r in rows if r["participation"] == participation}
        if "omnifm" not in by_label:
            continue
        omni = by_label["omnifm"]["restricted_accuracy"]["mean"]
        baselines = {
            "the best other strategy": lambda k: k in STRATEGIES and k != "omnifm",
            # baselines run with extra options (--variants, e.g. the same BatchNorm recalibration as OmniFM)
            "the best baseline variant": lambda k: (
                k not in STRATEGIES and k != CENTRALISED and not k.startswith("omnifm")
            ),
        }
        for comparison, chosen in baselines.items():
            scores = {k: v["restricted_accuracy"]["mean"] for k, v in by_label.items() if chosen(k)}
            if scores:
                best = max(scores, key=scores.get)
                lines.append(_goal_line(participation, f"{comparison} ({best})", 100 * (omni - scores[best]), 2))
        if LOCAL_CONVERGED in by_label:
            gap = 100 * (omni - by_label[LOCAL_CONVERGED]["restricted_accuracy"]["mean"])
            lines.append(_goal_line(participation, LOCAL_CONVERGED, gap, 3))
        if CENTRALISED in by_label:
            gap = 100 * (omni - by_label[CENTRALISED]["restricted_accuracy"]["mean"])
            lines.append(_goal_line(participation, "pooled centralised", gap, -2))
        if "fedavg" in by_label:
            gap = 100 * (by_label["omnifm"]["accuracy"]["mean"] - by_label["fedavg"]["accuracy"]["mean"])
            lines.append(_goal_line(participation, "FedAvg, all labels", gap, 20))
    return lines


def _cell(stat: dict) -> str:
    if not np.isfinite(stat["mean"]):
        return "n/a"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def to_markdown(report: dict) -> str:
    s = report["settings"]
    rows = table_rows(report)
    lines = [
        f"{s['clients']} sites, {s['rounds']} rounds x {s['local_epochs']} local epoch(s), "
        f"image size {s['image_size']}, seeds {s['seeds']}, extra job options {s['forwarded'] or 'none'}; "
        f"{report['machine']['date']}. "
        "Mean ± standard deviation over seeds of the mean per-site test accuracy (%).",
        "",
        "| participation | strategy | acc (own labels) | acc (all labels) | macro-F1 (own) | last-5 acc (own) "
        "| majority rate | failed runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['participation']} | {r['label']} | {_cell(r['restricted_accuracy'])} | {_cell(r['accuracy'])} "
            f"| {_cell(r['restricted_macro_f1'])} | {_cell(r['last5_restricted_accuracy'])} "
            f"| {_cell(r['majority_rate'])} | {r['failed']} |"
        )
    lines += unseen_markdown(report["runs"])
    return "\n".join([*lines, *_paired_markdown(report.get("paired", [])), "", "Goals:", *goals(rows)])


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(report)
    participations = list(dict.fromkeys(r["participation"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * len(participations)), 4), dpi=120)
    width = 0.8 / max(1, len(participations))
    for i, participation in enumerate(participations):
        stats = {r["label"]: r["restricted_accuracy"] for r in rows if r["participation"] == participation}
        means = [100 * stats[k]["mean"] if k in stats else np.nan for k in labels]
        spreads = [100 * stats[k]["std"] if k in stats else 0 for k in labels]
        ax.bar(np.arange(len(labels)) + i * width, means, width, yerr=spreads, label=f"participation {participation}")
    ax.set_xticks(np.arange(len(labels)) + width * (len(participations) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("mean per-site test accuracy, own labels (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_variants(value: str) -> dict[str, list[str]]:
    """``--variants``: a JSON file, or JSON text, mapping a label to ``[strategy, job options...]``."""
    text = Path(value).read_text() if Path(value).is_file() else value
    variants = json.loads(text)
    for label, spec in variants.items():
        if not (isinstance(spec, list) and spec and all(isinstance(a, str) for a in spec)):
            raise argparse.ArgumentTypeError(f"variant {label!r}: expected [strategy, job options...], got {spec!r}")
    return variants


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = benchmark_parser(__doc__, job_options=True)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
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
