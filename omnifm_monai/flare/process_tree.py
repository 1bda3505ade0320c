"""Stopping a simulation's whole process tree: a job or simulator process and every process under it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator

__all__ = ["sigterm_raises_exit", "stop_process_tree"]


def stop_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and every process under it, by their pids.

    NVFlare's simulator and its site workers each start a session of their own, so a signal to a process group
    would miss them: this kills the descendants first (NVFlare's ``kill_child_processes``, as
    ``FedJob.simulator_run`` does on an interrupt), then ``process`` itself.
    """
    from nvflare.private.fed.app.utils import kill_child_processes

    kill_child_processes(process.pid)
    process.kill()


@contextlib.contextmanager
def sigterm_raises_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in place of ending the process at once.

    A scheduler or ``kill PID`` sends SIGTERM, which by default ends Python without running ``except`` or
    ``finally``: a job waiting on a simulator would leave it (in its own session) and its workers running.
    Raised as an exception, it reaches the caller's cleanup (:func:`stop_process_tree`). Outside the main
    thread, where Python cannot set signal handlers, the block runs unchanged. The previous handler is restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
