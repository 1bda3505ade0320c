"""Stopping a simulation's whole process tree: a job or simulator process and every process under it."""

from __future__ import annotations

import subprocess

__all__ = ["stop_process_tree"]


def stop_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and every process under it, by their pids.

    NVFlare's simulator and its site workers each start a session of their own, so a signal to a process group
    would miss them: this kills the descendants first (NVFlare's ``kill_child_processes``, as
    ``FedJob.simulator_run`` does on an interrupt), then ``process`` itself.
    """
    from nvflare.private.fed.app.utils import kill_child_processes

    kill_child_processes(process.pid)
    process.kill()
