"""What every benchmark script shares: machine info, job options, a simulated job's memory, the report files.

The scripts import this module as ``_common`` (``python benchmarks/x.py`` puts ``benchmarks/`` first on
the module path); the library itself comes from the installed ``omnifm_monai``.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from omnifm_monai.jobs import REPO_ROOT

__all__ = [
    "add_simulation_options",
    "benchmark_parser",
    "cpu_name",
    "machine_info",
    "option_list",
    "paired_difference",
    "simulate_job",
    "simulation_report",
    "timestamp",
    "tree_rss",
    "write_report",
]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def timestamp() -> str:
    """Now, local time with its offset, to the second (ISO 8601)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU, cores, Python, date and the 1-minute load average before the run, then ``extra``."""
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": timestamp(),
        "loadavg_1min_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **extra,
    }


def benchmark_parser(doc: str, *, job_options: bool = False) -> argparse.ArgumentParser:
    """A parser described by the script's first docstring line; ``job_options``: unknown options go to the job."""
    epilog = "Other options go to omnifm_job." if job_options else None
    return argparse.ArgumentParser(description=doc.splitlines()[0], epilog=epilog)


def add_simulation_options(
    parser: argparse.ArgumentParser, *, rounds: int, participation: float, samples_per_client: int
) -> None:
    """The options of the job :func:`simulate_job` runs (``--strategy`` ... ``--sample-seconds``)."""
    parser.add_argument("--strategy", default="omnifm")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--participation", type=float, default=participation)
    parser.add_argument("--samples-per-client", type=int, default=samples_per_client)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--sample-seconds", type=float, default=1.0, help="memory sampling of the simulator")


def simulation_report(args: argparse.Namespace, forwarded: list[str], **results: Any) -> dict[str, Any]:
    """A simulation benchmark's report: its settings (with the forwarded job options), cores, date, ``results``."""
    return {"settings": vars(args) | {"forwarded": forwarded}, "cpu_count": os.cpu_count(), "date": timestamp(),
            **results}  # fmt: skip


def option_list(options: dict[str, Any]) -> list[str]:
    """``{"--clients": 8, ...}`` -> ``["--clients", "8", ...]``, the job options of one run."""
    return [part for flag, value in options.items() for part in (flag, str(value))]


def paired_difference(a: list[float], b: list[float], *, level: float = 0.95) -> dict[str, float]:
    """Mean of the paired differences ``a[i] - b[i]`` (same seed and partition) with a ``level`` t interval.

    Pairs with a non-finite value are left out. The interval is ``mean +- t * sd / sqrt(n)``, ``t`` the
    ``(1 + level) / 2`` quantile of Student's t with ``n - 1`` degrees of freedom (``scipy.stats.t``); with
    fewer than 2 pairs the interval is NaN.

    Returns:
        ``{"mean", "sd", "n", "low", "high"}``.

    Raises:
        ValueError: when ``a`` and ``b`` differ in length, or ``level`` is not in (0, 1).
    """
    import numpy as np
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}; expected one pair per seed.")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1).")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)  # (n,) one difference per seed
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0, "low": float("nan"), "high": float("nan")}
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "sd": float("nan"), "n": n, "low": float("nan"), "high": float("nan")}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / np.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half}


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(sum, max) of the resident memory of ``process`` and all its descendants, in bytes."""
    sizes = []
    for p in [process, *process.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss)
        except psutil.Error:  # ended between listing and reading
            pass
    return sum(sizes), max(sizes, default=0)


def simulate_job(num_clients: int, args: argparse.Namespace, forwarded: list[str]) -> dict:
    """One job in the NVFlare simulator under ``<args.out>/clients_<num_clients>``, its memory sampled.

    ``args`` gives ``strategy``, ``threads``, ``rounds``, ``participation``, ``image_size``,
    ``samples_per_client``, ``sample_seconds`` and ``out``; ``forwarded`` are further job options.
    Returns the run's record: completion, wall time, peak memory and, when it finished, its rounds and
    mean restricted accuracy.
    """
    root = Path(args.out) / f"clients_{num_clients}"
    state, workspace = root / "state", root / "workspace"
    options = {
        "--strategy": args.strategy, "--clients": num_clients, "--threads": args.threads, "--rounds": args.rounds,
        "--participation": args.participation, "--image-size": args.image_size,
        "--samples-per-client": args.samples_per_client, "--state-root": state, "--workspace": workspace,
    }  # fmt: skip
    command = [sys.executable, "-m", "nvflare_jobs.omnifm_job", *option_list(options), *forwarded]
    root.mkdir(parents=True, exist_ok=True)
    peak_sum = peak_max = 0
    start = time.perf_counter()
    with open(root / "simulator.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
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


def write_report(
    out: str | Path,
    report: dict,
    markdown: str,
    *,
    indent: int = 1,
    plots: dict[str, Callable[[dict, Path], None]] | None = None,
    echo: str | None = None,
    announce: bool = False,
) -> Path:
    """``results.json``, ``results.md`` and each plot under ``out``; the table is printed too.

    Args:
        out: the folder (created).
        report: what ``results.json`` holds (values JSON does not know are written as strings).
        markdown: what ``results.md`` holds (a final newline is added if it has none).
        indent: the JSON indentation.
        plots: file name -> ``draw(report, path)``, e.g. ``{"accuracy.png": plot}``.
        echo: what is printed instead of ``markdown``.
        announce: also print the names of the files written.

    Returns:
        the folder.
    """
    out = Path(out)
    plots = plots or {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=indent, default=str))
    (out / "results.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    for name, draw in plots.items():
        draw(report, out / name)
    print(markdown if echo is None else echo)
    if announce:
        print(f"wrote {out}/results.json, results.md" + "".join(f", {name}" for name in plots))
    return out
