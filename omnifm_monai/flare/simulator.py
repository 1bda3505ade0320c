"""NVFlare 2.9's simulator, started with one race fixed: ``python -m omnifm_monai.flare.simulator JOB -w WS ...``.

The race (NVFlare 2.9.0, ``nvflare/private/fed/app/simulator/simulator_runner.py``): the simulator's client
runner starts a worker process for each site turn from several threads, and each thread writes the site's
name into one build context that all threads share (``self.build_ctx["client_name"] = ...``) before it
sends that context to its worker. When two sites start at the same moment, a thread can send the other
site's name: the worker of ``site-2`` then runs as ``site-1`` inside ``site-2``'s workspace, cannot find its
app (``ValueError: Can not find omnifm_client.py``) and ends, while the server waits for ``site-2``'s result
for ever. It was seen twice in one afternoon on 2 loaded cores (a benchmark and the test suite), both with
more than one simulator thread.

The fix keeps ``client_name`` per thread: :class:`PerThreadClientName` stores the key for the thread that
wrote it and pickles, in the sending thread, as a plain dict with that thread's value. Nothing else of the
simulator changes; the command line is NVFlare's (``define_simulator_parser``). The patch applies in this
process and in the processes it forks (the simulator's client runner is one); NVFlare's own
``python -m nvflare.private.fed.app.simulator.simulator`` stays as it is.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CLIENT_NAME_KEY", "PATCHED_LOG_LINE", "WARM_LOG_LINE", "PerThreadClientName", "patch_client_runner", "main"]

CLIENT_NAME_KEY = "client_name"
"""The build-context key NVFlare's client runner writes per site turn."""

PATCHED_LOG_LINE = "client runner: each site turn sends its own client name (omnifm_monai.flare.simulator)"
"""What the patched client runner logs once, so a run's log shows that the fix was in place."""


WARM_LOG_LINE = "simulator workers fork from one warm process (omnifm_monai.flare.warm_workers)"
"""What the simulator prints when its site turns fork from the warm process instead of a new interpreter."""


class PerThreadClientName(dict):
    """A build context whose ``client_name`` belongs to the thread that set it; every other key is shared.

    Pickling (what ``multiprocessing`` does when a thread sends the context to its worker) gives a plain
    ``dict`` holding the pickling thread's ``client_name``.
    """

    def __init__(self, base: Mapping[str, Any]):
        super().__init__(base)
        self._local = threading.local()
        if CLIENT_NAME_KEY in self:
            self._default = dict.pop(self, CLIENT_NAME_KEY)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == CLIENT_NAME_KEY:
            self._local.value = value
        else:
            super().__setitem__(key, value)

    def __getitem__(self, key: str) -> Any:
        if key == CLIENT_NAME_KEY:
            return self._client_name()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return key == CLIENT_NAME_KEY and self._has_client_name() or super().__contains__(key)

    def snapshot(self) -> dict[str, Any]:
        """A plain dict: the shared keys and this thread's ``client_name`` (if any)."""
        plain = dict(self.items())
        if self._has_client_name():
            plain[CLIENT_NAME_KEY] = self._client_name()
        return plain

    def __reduce__(self):
        return dict, (self.snapshot(),)

    def __deepcopy__(self, memo: dict) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self.snapshot(), memo)

    def _has_client_name(self) -> bool:
        return hasattr(self._local, "value") or hasattr(self, "_default")

    def _client_name(self) -> Any:
        if hasattr(self._local, "value"):
            return self._local.value
        if hasattr(self, "_default"):
            return self._default
        raise KeyError(CLIENT_NAME_KEY)


def patch_client_runner() -> None:
    """Make every ``SimulatorClientRunner`` created from now on keep its build context's ``client_name`` per
    thread (idempotent)."""
    from nvflare.private.fed.app.simulator.simulator_runner import SimulatorClientRunner

    if getattr(SimulatorClientRunner, "_omnifm_per_thread_client_name", False):
        return
    original_init = SimulatorClientRunner.__init__

    def init(self, server_custom_folder, args, clients, client_config, deploy_args, build_ctx):
        context = PerThreadClientName(build_ctx) if isinstance(build_ctx, Mapping) else build_ctx
        original_init(self, server_custom_folder, args, clients, client_config, deploy_args, context)
        self.logger.info(PATCHED_LOG_LINE)

    SimulatorClientRunner.__init__ = init
    SimulatorClientRunner._omnifm_per_thread_client_name = True


def main(argv: Sequence[str] | None = None) -> int:
    """NVFlare's simulator command line (``job_folder -w WS -c CLIENTS -n N -t THREADS ...``), patched."""
    from nvflare.private.fed.app.simulator.simulator import define_simulator_parser, run_simulator
    from nvflare.private.fed.app.utils import version_check

    from omnifm_monai.flare.warm_workers import patch_worker_launch

    patch_client_runner()
    if patch_worker_launch():
        print(WARM_LOG_LINE, flush=True)
    version_check()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    define_simulator_parser(parser)
    return int(run_simulator(parser.parse_args(argv)) or 0)


if __name__ == "__main__":
    sys.exit(main())
