"""NVFlare simulator runs of the job builder, as the integration tests start them: their logs, never exit codes."""

import glob
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from omnifm_monai.flare.process_tree import stop_process_tree

REPO = Path(__file__).resolve().parents[2]
PARALLEL = int(os.environ.get("OMNIFM_PARALLEL_SIMULATIONS", "3"))
"""Simulations :func:`simulate_many` runs side by side: a tiny job mostly waits (start-up, task polling),
so three share 2 cores at about the wall time of one and a half."""

__all__ = ["PARALLEL", "REPO", "run_bounded", "simulate", "simulate_many"]


def _command(tmp_path: Path, options: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "nvflare_jobs.omnifm_job", "--clients", "2", "--rounds", "1", "--threads", "2",
        "--image-size", "32", *options,
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / "ws"),
    ]  # fmt: skip


def _logs(tmp_path: Path, output: str) -> str:
    logs = output
    for path in sorted(glob.glob(str(tmp_path / "ws" / "**" / "log*.txt"), recursive=True)):
        logs += "\n" + Path(path).read_text(errors="replace")
    return logs


def run_bounded(command: Sequence[str], *, timeout: int) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True)`` in the repository; past ``timeout`` seconds
    the whole process tree is stopped (:func:`stop_process_tree`) before ``TimeoutExpired`` is raised."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_tree(process)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def simulate(tmp_path: Path, *options: str, timeout: int = 600) -> str:
    """Run ``nvflare_jobs.omnifm_job`` (2 sites, 1 round, 32 px unless ``options`` say otherwise).

    State goes to ``tmp_path/state``, the workspace to ``tmp_path/ws``. Returns stdout, stderr and every
    log file of the workspace: the simulator can exit 0 after a client crashed, so tests read these.
    """
    done = run_bounded(_command(tmp_path, options), timeout=timeout)
    return _logs(tmp_path, done.stdout + done.stderr)


def simulate_many(
    root: Path,
    runs: Mapping[str, Sequence[str]],
    *,
    parallel: int = PARALLEL,
    timeout: int = 900,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, tuple[Path, str]]:
    """:func:`simulate` for each ``{name: options}``, at most ``parallel`` at a time, each in ``root/name``
    (with the environment variables ``env[name]`` added, if given).

    Returns:
        ``{name: (its folder, its logs)}``; a run past ``timeout`` seconds is killed (by its pid) and its
        logs end with a line saying so.
    """
    pending = list(runs.items())
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    results: dict[str, tuple[Path, str]] = {}

    def finish(name: str, process: subprocess.Popen, note: str = "") -> None:
        folder = root / name
        output = (folder / "output.txt").read_text(errors="replace")
        results[name] = (folder, _logs(folder, output + note))

    while pending or running:
        while pending and len(running) < parallel:
            name, options = pending.pop(0)
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "output.txt", "w") as out:
                extra = dict(os.environ, **(env or {}).get(name, {}))
                command = _command(folder, options)
                process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=extra)
            running[name] = (process, time.monotonic())
        for name, (process, started) in list(running.items()):
            if process.poll() is not None:
                finish(name, process)
                del running[name]
            elif time.monotonic() - started > timeout:
                stop_process_tree(process)
                process.wait()
                finish(name, process, f"\nsimulate_many: killed after {timeout} s\n")
                del running[name]
        time.sleep(0.5)
    return results
