"""Benchmark: what running under NVFlare costs, against the same federated training as a plain loop.

For one job (task, strategy, sites, rounds, data; other options go to ``omnifm_job``) this runs:

- ``plain``: one Python process builds every site's :class:`~omnifm_monai.flare.client.SiteTrainer`
  (the client code, bundle, data and private-state files the NVFlare client uses) and the server's
  :class:`~omnifm_monai.flare.server_core.ServerCore`, and runs the rounds as a for-loop: payload ->
  receive -> evaluate -> train -> upload -> submit, close the round; then every site's final evaluation.
  Sites train one after another with all the machine's cores.
- ``nvflare``: the same job in the NVFlare simulator (``python -m nvflare_jobs.omnifm_job``), once per
  ``--threads`` value (client processes running side by side, each with ``cores // threads`` torch threads).

It records the wall time of the whole run, the median wall time of a round after the first (from the
server's round records, ``closed_at``: the steady state, without start-up), the peak memory of the
largest process, and the final mean test metric as a check that both ran the same training; the
ratios ``nvflare / plain`` are taken within one run of this script. The issue's goal: a round under
NVFlare within 1.3x of the plain loop at 8 sites. Writes ``results.json`` and ``results.md`` under
``--out``. Usage::

    python benchmarks/nvflare_overhead.py --clients 8 --rounds 6 --threads 1 2 8 --out runs/benchmarks/overhead
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import sys
import time
from argparse import Namespace
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
for path in (BENCHMARKS.parent, BENCHMARKS):  # the repository (nvflare_jobs) and federation_scale.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from federation_scale import run_one as run_simulation  # noqa: E402
from federation_scale import write_report  # noqa: E402

from nvflare_jobs.omnifm_job import parse_args as parse_job_args  # noqa: E402


def job_arguments(args: Namespace, forwarded: list[str], state_root: Path) -> list[str]:
    """``omnifm_job`` arguments of the benchmarked job (the plain loop reads the same settings)."""
    return [
        "--strategy", args.strategy, "--clients", str(args.clients), "--rounds", str(args.rounds),
        "--participation", str(args.participation), "--image-size", str(args.image_size),
        "--samples-per-client", str(args.samples_per_client), "--state-root", str(state_root), *forwarded,
    ]  # fmt: skip


def steady_round_seconds(history: list[dict]) -> list[float]:
    """Wall seconds of each round after the first, from the rounds' ``closed_at`` stamps."""
    stamps = [r["closed_at"] for r in history if "closed_at" in r]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def headline_mean(final_metrics: dict[str, dict], metric: str) -> float | None:
    values = [m[metric] for m in final_metrics.values() if metric in m]
    return statistics.fmean(values) if values else None


def plain_loop(args: Namespace, forwarded: list[str]) -> dict:
    """The job's rounds as a for-loop in this process, through the client's and server's own classes."""
    import torch

    from nvflare_jobs.omnifm_job import build_network, bundle_root, client_args, federation_for
    from omnifm_monai.flare import client
    from omnifm_monai.flare.sampling import sample_participants
    from omnifm_monai.flare.server_core import ServerCore
    from omnifm_monai.tasks import get_task

    root = Path(args.out) / "plain"
    shutil.rmtree(root, ignore_errors=True)  # a site finding private state on disk would resume from it
    settings, _ = parse_job_args(job_arguments(args, forwarded, root / "state"))
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    federation = federation_for(settings)
    network, strategy = build_network(settings, federation.num_classes)
    initial = {k: v.detach().cpu().numpy() for k, v in network.state_dict().items()}
    core = ServerCore(strategy, initial, strategy.private_keys(network), **settings.server_options)
    sites = {}
    for c in federation.clients:
        site_args = client.parse_args(client_args(settings, c.name, federation.num_classes).split())
        site_args.bundle_root = str(bundle_root(settings.task))
        sites[c.name] = client.SiteTrainer(site_args, c.name)
    names = sorted(sites)  # the controller's order
    setup_seconds = time.perf_counter() - start
    for round_num in range(settings.num_rounds):
        chosen = [names[i] for i in sample_participants(len(names), settings.participation, round_num, settings.seed)]
        metrics = {}
        for name in chosen:
            site = sites[name]
            site.receive(*core.payload(name))
            metrics[name] = site.evaluate()
            site.train()
            core.submit(name, *site.payload())
        core.close_round(chosen, metrics)
    final = {}
    for name in names:
        sites[name].receive(*core.payload(name))
        final[name] = sites[name].evaluate()
    metric = get_task(settings.task).headline_metric
    return {
        "mode": "plain",
        "threads": 1,
        "completed": len(core.history) == settings.num_rounds and len(final) == len(names),
        "wall_seconds": time.perf_counter() - start,
        "setup_seconds": setup_seconds,
        "round_seconds": steady_round_seconds(core.history),
        "peak_rss_largest_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metric": metric,
        "final_mean": headline_mean(final, metric),
    }


def nvflare_run(args: Namespace, forwarded: list[str], threads: int) -> dict:
    """The same job in the NVFlare simulator with ``threads`` client processes side by side."""
    from omnifm_monai.tasks import get_task

    settings, _ = parse_job_args(job_arguments(args, forwarded, Path("unused")))
    root = Path(args.out) / f"nvflare_threads{threads}"
    shutil.rmtree(root, ignore_errors=True)  # the controller would resume a finished run's state
    simulation = Namespace(**{**vars(args), "threads": threads, "out": str(root)})
    record = run_simulation(args.clients, simulation, forwarded)
    state = root / f"clients_{args.clients}" / "state" / "server"
    history, final = [], {}
    if (state / "server_state.json").is_file():
        history = json.loads((state / "server_state.json").read_text())["history"]
    if (state / "final_metrics.json").is_file():
        final = json.loads((state / "final_metrics.json").read_text())["metrics"]
    metric = get_task(settings.task).headline_metric
    return {
        "mode": "nvflare",
        "threads": threads,
        "completed": record["completed"],
        "wall_seconds": record["wall_seconds"],
        "round_seconds": steady_round_seconds(history),
        "peak_rss_largest_mib": record["peak_rss_largest_mib"],
        "peak_rss_total_mib": record["peak_rss_total_mib"],
        "metric": metric,
        "final_mean": headline_mean(final, metric),
    }


def summarise(runs: list[dict]) -> list[dict]:
    """Per run: median steady round seconds and the ratios to the plain loop's."""
    plain = next((r for r in runs if r["mode"] == "plain"), None)
    rows = []
    for r in runs:
        median_round = statistics.median(r["round_seconds"]) if r["round_seconds"] else float("nan")
        rows.append({**r, "median_round_seconds": median_round})
    if plain is not None:
        base = rows[runs.index(plain)]
        for row in rows:
            row["round_ratio"] = row["median_round_seconds"] / base["median_round_seconds"]
            row["wall_ratio"] = row["wall_seconds"] / base["wall_seconds"]
    return rows


def to_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"{s['strategy']}, {s['clients']} sites, {s['rounds']} rounds, participation {s['participation']}, "
        f"{s['samples_per_client']} images per site at {s['image_size']} px, other options {s['forwarded'] or 'none'}; "
        f"{report['cpu_count']} CPU cores; {report['date']}.",
        "",
        "| run | completed | wall s | median round s (after the first) | round / plain | wall / plain "
        "| largest process MiB | final mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        name = "plain loop, one process" if r["mode"] == "plain" else f"NVFlare simulator, {r['threads']} threads"
        final = "-" if r["final_mean"] is None else f"{r['metric']} {r['final_mean']:.3f}"
        lines.append(
            f"| {name} | {'yes' if r['completed'] else 'NO'} | {r['wall_seconds']:.0f} "
            f"| {r['median_round_seconds']:.1f} | {r.get('round_ratio', float('nan')):.2f} "
            f"| {r.get('wall_ratio', float('nan')):.2f} | {r['peak_rss_largest_mib']:.0f} | {final} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Other options go to omnifm_job.")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2, 8], help="simulator threads, one run each")
    p.add_argument("--strategy", default="omnifm")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--participation", type=float, default=1.0)
    p.add_argument("--samples-per-client", type=int, default=240)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--sample-seconds", type=float, default=1.0, help="memory sampling of the simulator")
    p.add_argument("--out", default="runs/benchmarks/overhead")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, forwarded = parse_args(argv)
    print("plain loop ...", flush=True)
    runs = [plain_loop(args, forwarded)]
    for threads in args.threads:
        print(f"NVFlare simulator, {threads} threads ...", flush=True)
        runs.append(nvflare_run(args, forwarded, threads))
    report = {
        "settings": vars(args) | {"forwarded": forwarded},
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "rows": summarise(runs),
    }
    write_report(Path(args.out), report, to_markdown(report))


if __name__ == "__main__":
    main()
