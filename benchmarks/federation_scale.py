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

import argparse
import datetime
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(sum, max) of the resident memory of ``process`` and all its descendants, in bytes."""
    sizes = []
    for p in [process, *process.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss)
        except psutil.Error:  # ended between listing and reading
            pass
    return sum(sizes), max(sizes, default=0)


def run_one(num_clients: int, args: argparse.Namespace, forwarded: list[str]) -> dict:
    root = Path(args.out) / f"clients_{num_clients}"
    state, workspace = root / "state", root / "workspace"
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job", "--strategy", args.strategy,
        "--clients", str(num_clients), "--threads", str(args.threads), "--rounds", str(args.rounds),
        "--participation", str(args.participation), "--image-size", str(args.image_size),
        "--samples-per-client", str(args.samples_per_client),
        "--state-root", str(state), "--workspace", str(workspace), *forwarded,
    ]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    peak_sum = peak_max = 0
    start = time.perf_counter()
    with open(root / "simulator.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            total, largest = tree_rss(watched)
            peak_sum, peak_max = max(peak_sum, total), max(peak_max, largest)
            time.sleep(args.sample_seconds)
    wall = time.perf_counter() - start
    record = {"clients": num_clients, "wall_seconds": wall, "returncode": process.returncode,
              "peak_rss_total_mib": peak_sum / 2**20, "peak_rss_largest_mib": peak_max / 2**20}  # fmt: skip
    tracebacks = sum(
        Path(p).read_text(errors="replace").count("Traceback (most recent call last)")
        for p in glob.glob(str(workspace / "**" / "log*.txt"), recursive=True)
    )
    try:
        history = json.loads((state / "server" / "server_state.json").read_text())["history"]
        final = json.loads((state / "server" / "final_metrics.json").read_text())["metrics"]
    except (OSError, ValueError, KeyError):
        return {**record, "completed": False, "tracebacks": tracebacks}
    round_seconds = [sum(r.get("seconds", {}).values()) for r in history]
    accuracies = [m["restricted_accuracy"] for m in final.values() if "restricted_accuracy" in m]
    completed = len(history) == args.rounds and len(final) == num_clients and tracebacks == 0
    return {
        **record,
        "completed": completed,
        "tracebacks": tracebacks,
        "rounds": len(history),
        "sites_evaluated": len(final),
        "server_seconds_per_round": statistics.median(round_seconds) if round_seconds else None,
        "wall_seconds_per_round": wall / max(1, len(history)),
        "participants_per_round": statistics.median(len(r["participants"]) for r in history) if history else 0,
        "restricted_accuracy": statistics.fmean(accuracies) if accuracies else None,
    }


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


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Other options go to omnifm_job.")
    p.add_argument("--clients", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--strategy", default="omnifm")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--participation", type=float, default=0.2)
    p.add_argument("--samples-per-client", type=int, default=60)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--sample-seconds", type=float, default=1.0)
    p.add_argument("--out", default="runs/benchmarks/scale")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, forwarded = parse_args(argv)
    runs = []
    for num_clients in args.clients:
        print(f"{num_clients} sites ...", flush=True)
        runs.append(run_one(num_clients, args, forwarded))
        print(json.dumps(runs[-1]), flush=True)
    report = {
        "settings": vars(args) | {"forwarded": forwarded},
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "runs": runs,
    }
    write_report(Path(args.out), report, to_markdown(report))


def write_report(out: Path, report: dict, markdown: str) -> None:
    """``results.json`` and ``results.md`` under ``out``; the table is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
