"""Benchmark: how the NVFlare simulation scales with the number of sites on one machine.

For each number of sites (``--clients 16 32 64``) this runs one OmniFM job in the NVFlare simulator
(``python -m nvflare_jobs.omnifm_job``) with fewer simulator threads than sites, partial participation
and each site's private state on disk, and records:

- whether it completed (every round recorded, every site's final evaluation, no traceback in the logs);
- the wall time of the whole run and the median wall time per round (from the server's round history);
- the peak memory of the simulator's process tree (RSS summed over the processes, sampled every
  ``--sample-seconds``) and of its largest process;
- the final mean test accuracy over sites (restricted to each site's label space).

Writes ``results.json`` and ``results.md`` under ``--out``. Usage::

    python benchmarks/federation_scale.py --clients 16 32 64 --threads 4 --rounds 5 --participation 0.2
"""

from __future__ import annotations

import json
from argparse import Namespace

from _common import add_simulation_options, benchmark_parser, simulate_job, simulation_report, tree_rss, write_report

__all__ = ["main", "parse_args", "to_markdown", "tree_rss"]


def to_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"OmniFM ({s['strategy']}), {s['rounds']} rounds, participation {s['participation']}, {s['threads']} "
        f"simulator threads, {s['samples_per_client']} images per site at {s['image_size']} px; "
        f"{report['cpu_count']} CPU cores; {report['date']}.",
        "",
        "| sites | completed | wall s | wall s / round (incl. start-up) | sites per round | peak RSS total MiB "
        "| largest process MiB | acc (own labels) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        accuracy = r.get("restricted_accuracy")
        lines.append(
            f"| {r['clients']} | {'yes' if r['completed'] else 'NO'} | {r['wall_seconds']:.0f} "
            f"| {r.get('wall_seconds_per_round', float('nan')):.0f} | {r.get('participants_per_round', '-')} "
            f"| {r['peak_rss_total_mib']:.0f} | {r['peak_rss_largest_mib']:.0f} "
            f"| {'-' if accuracy is None else f'{100 * accuracy:.1f}'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[Namespace, list[str]]:
    p = benchmark_parser(__doc__, job_options=True)
    p.add_argument("--clients", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--threads", type=int, default=4)
    add_simulation_options(p, rounds=5, participation=0.2, samples_per_client=60)
    p.add_argument("--out", default="runs/benchmarks/scale")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, forwarded = parse_args(argv)
    runs = []
    for num_clients in args.clients:
        print(f"{num_clients} sites ...", flush=True)
        runs.append(simulate_job(num_clients, args, forwarded))
        print(json.dumps(runs[-1]), flush=True)
    report = simulation_report(args, forwarded, runs=runs)
    write_report(args.out, report, to_markdown(report))


if __name__ == "__main__":
    main()
