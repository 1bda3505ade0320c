"""Simulator workers forked from one warm process, so a site turn does not pay 7 s of imports.

With fewer simulator threads than sites, NVFlare 2.9's client runner (``SimulatorClientRunner.do_one_task`` in
``nvflare/private/fed/app/simulator/simulator_runner.py``) starts a new ``python -m
nvflare.private.fed.app.simulator.simulator_worker`` process for every site turn. Importing PyTorch, MONAI,
NVFlare and the client takes about 7 s of CPU of such a restart, and a warm process rebuilds a site in well
under 1 s (docs/benchmarks.md, "Where a restart's time goes").

:func:`patch_worker_launch` keeps NVFlare's runner as it is and changes only how the worker process starts:
the first launch starts one *warm* process (``python -m omnifm_monai.flare.warm_workers``) that imports
:data:`PRELOADED` once and then waits; each worker launch asks it to ``fork()``. The child starts a session
of its own (as the runner's ``preexec_fn=os.setsid`` does), takes the runner's environment and command line
and runs NVFlare's worker module as ``__main__``, so a turn still runs in a fresh process of its own, with
NVFlare's worker code, and ends as NVFlare's does. The runner gets a :class:`ForkedWorker`, which answers
the ``Popen`` calls the runner makes (``poll``, ``wait``, ``terminate``, ``kill``, ``returncode``). In ``ps`` a
forked worker keeps the warm process's command line (``python -m omnifm_monai.flare.warm_workers ...``).

Only the simulator uses it (``python -m omnifm_monai.flare.simulator``, by default; ``OMNIFM_COLD_WORKERS=1``
turns it off). The warm process runs no PyTorch operation before it forks, so no
thread pool is copied into a child. What a child imports beyond :data:`PRELOADED` (the job's ``custom/``
folder: the client entry script and the bundle) comes from the runner's ``PYTHONPATH`` as before.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = [
    "COLD_WORKERS_ENV",
    "PRELOADED",
    "WORKER_MODULE",
    "ForkedWorker",
    "WarmWorkerPool",
    "patch_worker_launch",
    "remove_stale_status_dirs",
    "serve",
]

WORKER_MODULE = "nvflare.private.fed.app.simulator.simulator_worker"
"""The module NVFlare's client runner starts for each site turn."""

PRELOADED = (
    "numpy",
    "torch",
    "torch._dynamo",  # imported by PyTorch at the first optimizer step (0.9 s of a turn)
    "monai",
    "monai.bundle",
    "monai.engines",
    "monai.handlers",
    "ignite.engine",
    # the worker module's imports (the module itself runs as __main__ in the child, as in a new interpreter)
    "nvflare.private.fed.app.deployer.base_client_deployer",
    "nvflare.private.fed.client.client_engine",
    "nvflare.private.fed.client.fed_client",
    "nvflare.private.fed.simulator.simulator_app_runner",
    "nvflare.private.fed.utils.fed_utils",
    "nvflare.client",
    "nvflare.fuel.f3.streaming.stream_utils",
    "nvflare.app_common.executors.client_api_executor",
    "omnifm_monai.flare.client",
    "omnifm_monai.strategies",
    "omnifm_monai.tasks",
)
"""What the warm process imports once, before any fork: the slow imports of every site turn."""

COLD_WORKERS_ENV = "OMNIFM_COLD_WORKERS"
"""``1``: start every worker as NVFlare does, a new interpreter per site turn."""

_STATUS_DIR_PREFIX = "omnifm_warm_workers_"
_STATUS_DIR_NAME = re.compile(re.escape(_STATUS_DIR_PREFIX) + r"pid(\d+)_")  # pid of the pool's process
_WARM_PID_FILE = "warm.pid"  # in the status folder: the warm process's pid
_START_TIMEOUT_S = 120.0  # the warm process's imports, on a loaded machine
_LISTEN_TIMEOUT_S = 5.0  # a forked worker opens its port in tenths of a second; past this the runner retries


class ForkedWorker:
    """The runner's handle on a worker forked by the warm process (the part of ``subprocess.Popen`` it uses).

    The warm process numbers its forks, reaps its children and writes each exit status to
    ``<status_dir>/<launch number>``; until that file exists the worker is running. (Not by pid: pids are
    reused, and a new worker would read an earlier one's status.)
    """

    def __init__(self, pid: int, launch: int, status_dir: str, pool: WarmWorkerPool):
        self.pid, self.returncode = pid, None
        self._status_path = os.path.join(status_dir, str(launch))
        self._pool = pool
        self.args = [WORKER_MODULE]

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                with open(self._status_path) as f:
                    self.returncode = int(f.read())
                os.remove(self._status_path)
            except (OSError, ValueError):
                if not self._pool.alive() and not _pid_alive(self.pid):
                    self.returncode = -signal.SIGKILL  # the warm process is gone, so nobody reaped it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_status_dirs(temp_dir: str | None = None) -> list[str]:
    """Remove the status folders in ``temp_dir`` (default: the temp dir) that no live process uses; the removed.

    A warm process removes its folder when it exits, but not when it is killed (SIGKILL, as an interrupted
    run's process tree is stopped). A folder is stale only when both processes that use it are gone: the pool's
    process (its pid is in the name, ``omnifm_warm_workers_pid<PID>_...``) and the warm process (the pid in its
    ``warm.pid``). Folders named otherwise (older versions) are left alone.
    """
    temp_dir = temp_dir or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(temp_dir))
    except OSError:
        return removed
    for entry in entries:
        match = _STATUS_DIR_NAME.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or _pid_alive(int(match.group(1))):
            continue
        try:
            with open(os.path.join(entry.path, _WARM_PID_FILE)) as f:
                warm_pid = int(f.read())
        except (OSError, ValueError):
            warm_pid = 0  # the pool's process died before it wrote it: before any fork, so nothing writes here
        if warm_pid > 0 and _pid_alive(warm_pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


class WarmWorkerPool:
    """One warm process in this process, started at the first :meth:`launch`; thread-safe.

    Args:
        preloaded: the modules it imports before its first fork.
    """

    def __init__(self, preloaded: Sequence[str] = PRELOADED) -> None:
        self.preloaded = tuple(preloaded)
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._replies = None
        self._status_dir = ""

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:
        remove_stale_status_dirs()  # left by killed warm processes of earlier runs
        self._status_dir = tempfile.mkdtemp(prefix=f"{_STATUS_DIR_PREFIX}pid{os.getpid()}_")
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", __name__, str(theirs.fileno()), self._status_dir, ",".join(self.preloaded)]
        self._process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        with open(os.path.join(self._status_dir, _WARM_PID_FILE), "w") as f:
            f.write(str(self._process.pid))
        ours.settimeout(_START_TIMEOUT_S)
        self._socket, self._replies = ours, ours.makefile("r")
        self._reply()  # {"ready": true}, once the imports are done

    def _reply(self) -> dict:
        line = self._replies.readline()
        if not line:
            code = self._process.poll() if self._process else None
            raise RuntimeError(f"the warm worker process ended (exit code {code}) before it answered")
        return json.loads(line)

    def launch(self, argv: Sequence[str], env: Mapping[str, str]) -> ForkedWorker:
        """Fork a child that runs ``argv`` (``python -m MODULE ARGS...``) with ``env``; its handle.

        Raises:
            ValueError: ``argv`` is not ``python -m MODULE ...``.
            RuntimeError: the warm process could not be started or could not fork.
        """
        if list(argv[1:2]) != ["-m"] or len(argv) < 3:
            raise ValueError(f"expected [python, '-m', module, args...], got {list(argv)!r}")
        with self._lock:
            if not self.alive():
                self._start()
            request = {"module": argv[2], "argv": list(argv[3:]), "env": dict(env), "cwd": os.getcwd()}
            self._socket.sendall((json.dumps(request) + "\n").encode())
            reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"the warm worker process could not fork a worker: {reply['error']}")
        return ForkedWorker(int(reply["pid"]), int(reply["launch"]), self._status_dir, self)

    def close(self) -> None:
        """End the warm process (its forked workers run on, as NVFlare's own workers would)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()  # the warm process reads the end of its requests and exits
            if self._process is not None:
                for stop in (lambda: None, self._process.terminate, self._process.kill):
                    stop()
                    try:
                        self._process.wait(timeout=5)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self._process = self._socket = None


_POOL = WarmWorkerPool()
_logger = logging.getLogger(__name__)


class _SubprocessWithWarmWorkers:
    """``subprocess`` as NVFlare's client runner sees it: ``Popen`` of the worker module forks a warm worker.

    If the warm process cannot start or fork, the worker starts as NVFlare starts it (logged once).
    """

    def __init__(self, pool: WarmWorkerPool | None = None):
        self.pool = pool or _POOL
        self.failed = ""

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def Popen(self, args, *more, **options):  # noqa: N802 (subprocess's name)
        argv = list(args) if isinstance(args, (list, tuple)) else None
        is_worker = argv is not None and argv[1:3] == ["-m", WORKER_MODULE]
        if is_worker and not self.failed and not more and set(options) <= {"shell", "preexec_fn", "env"}:
            try:
                worker = self.pool.launch(argv, options.get("env") or os.environ)
            except (OSError, RuntimeError, ValueError) as e:
                self.failed = f"{type(e).__name__}: {e}"
                _logger.warning(f"warm simulator workers are off for this run ({self.failed}); starting each anew")
            else:
                wait_until_listening(worker, _option_value(argv, "--port"))
                return worker
        return subprocess.Popen(args, *more, **options)


def _option_value(argv: Sequence[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def wait_until_listening(worker: ForkedWorker, port: str, timeout: float = _LISTEN_TIMEOUT_S) -> bool:
    """Wait until ``worker`` listens on ``port`` (at most ``timeout`` s); whether it does.

    The runner connects to a new worker's port at once and, refused, sleeps 1 s before it tries again: a
    forked worker is listening after a few tenths of a second, so this wait saves most of that second.
    """
    import psutil

    if not port.isdigit():
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            sockets = psutil.Process(worker.pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            return False
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == int(port) for c in sockets):
            return True
        time.sleep(0.02)
    return False


def patch_worker_launch() -> bool:
    """Make NVFlare's client runner fork its workers from a warm process (idempotent). Returns whether it is on:
    on Linux unless :data:`COLD_WORKERS_ENV` is ``1`` (elsewhere a fork after PyTorch's import is less safe)."""
    if os.environ.get(COLD_WORKERS_ENV, "") == "1" or not sys.platform.startswith("linux"):
        return False
    from nvflare.private.fed.app.simulator import simulator_runner

    if not isinstance(simulator_runner.subprocess, _SubprocessWithWarmWorkers):
        simulator_runner.subprocess = _SubprocessWithWarmWorkers()
    return True


# --- the warm process --------------------------------------------------------------------------------------


_LAUNCHES: dict[int, int] = {}
"""In the warm process: the launch number of each running child, by pid."""


def _reap(status_dir: str) -> None:
    """Write the exit status of every child that has ended to ``<status_dir>/<launch number>`` (atomically)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        launch = _LAUNCHES.pop(pid, None)
        if launch is None:
            continue
        path = os.path.join(status_dir, str(launch))
        with open(path + ".tmp", "w") as f:
            f.write(str(os.waitstatus_to_exitcode(status)))
        os.replace(path + ".tmp", path)


def _fresh_process_identity() -> None:
    """What a new interpreter draws at import and a forked child would otherwise share with its siblings.

    NVFlare numbers a process's streams from ``stream_utils.sid_base`` (the import time in microseconds plus a
    random offset): workers forked with one base would reuse each other's stream ids, and the runner drops a
    result whose stream id it has seen (seen: a site's first result after a fast turn never arrived). NumPy's
    global generator is drawn again too; Python's ``random`` reseeds itself after a fork.
    """
    import random

    import numpy as np
    from nvflare.fuel.f3.streaming import stream_utils

    stream_utils.sid_base = int(time.time() * stream_utils.MILLION) + random.randint(0, stream_utils.MILLION)
    np.random.seed()


def _run_worker(request: dict, requests, control: socket.socket) -> None:
    """In the forked child: become the worker NVFlare would have started, then exit with its status."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker's own children are its own to wait for
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and a SIGTERM ends it as it ends NVFlare's worker
        requests.close()
        control.close()
        os.setsid()  # as the runner's preexec_fn: the worker ends by killing its own process group
        _fresh_process_identity()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        known = set(sys.path)
        extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p and p not in known]
        sys.path[1:1] = extra  # where a new interpreter puts PYTHONPATH: after the script's folder
        sys.argv = [request["module"], *request["argv"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(control: socket.socket, status_dir: str, preloaded: Sequence[str]) -> None:
    """The warm process: import ``preloaded``, then fork one worker per request line until the socket closes."""
    for name in preloaded:
        importlib.import_module(name)
    control.sendall(b'{"ready": true}\n')
    requests = control.makefile("r")
    control.settimeout(None)
    for launch in itertools.count():
        line = requests.readline()
        _reap(status_dir)
        if not line:  # the runner's process closed its end: no more turns
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # no reaping before the child is numbered
        try:
            request = json.loads(line)
            pid = os.fork()
        except (OSError, ValueError) as e:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            control.sendall((json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n").encode())
            continue
        if pid == 0:
            _run_worker(request, requests, control)
        _LAUNCHES[pid] = launch
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        control.sendall((json.dumps({"pid": pid, "launch": launch}) + "\n").encode())


def _reap_on_sigchld(status_dir: str) -> None:
    signal.signal(signal.SIGCHLD, lambda *_: _reap(status_dir))


if __name__ == "__main__":
    _status_dir = sys.argv[2]
    _reap_on_sigchld(_status_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the status folder is removed
    try:
        serve(socket.socket(fileno=int(sys.argv[1])), _status_dir, [m for m in sys.argv[3].split(",") if m])
    finally:  # the runner has gone: nobody polls the exit statuses any more
        shutil.rmtree(_status_dir, ignore_errors=True)
