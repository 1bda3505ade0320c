"""Simulator workers forked from a warm process: what the forked child is, and how the runner's handle behaves."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm workers are Linux only")

FAKE_WORKER = """
import json, os, sys, time
from nvflare.fuel.f3.streaming import stream_utils
out, mode = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    json.dump({"pid": os.getpid(), "sid": os.getsid(0), "argv": sys.argv[1:], "cwd": os.getcwd(),
               "mark": os.environ.get("OMNIFM_TEST_MARK"), "stream_base": stream_utils.sid_base}, f)
if mode == "listen":  # as NVFlare's worker does, a little after it starts
    import socket
    time.sleep(0.3)
    server = socket.create_server(("127.0.0.1", int(sys.argv[3])))
if mode in ("sleep", "listen"):
    time.sleep(60)
sys.exit(3)
"""


@pytest.fixture
def pool_and_env(tmp_path):
    from omnifm_monai.flare.warm_workers import WarmWorkerPool

    custom = tmp_path / "custom"  # only on the child's PYTHONPATH, as a job's custom/ folder is
    custom.mkdir()
    (custom / "fake_worker.py").write_text(textwrap.dedent(FAKE_WORKER))
    env = dict(os.environ, OMNIFM_TEST_MARK="from the runner")
    env["PYTHONPATH"] = os.pathsep.join([str(custom), env.get("PYTHONPATH", "")])
    pool = WarmWorkerPool(preloaded=("nvflare.fuel.f3.streaming.stream_utils",))
    yield pool, env, tmp_path
    status_dir = pool._status_dir
    pool.close()
    deadline = time.monotonic() + 30
    while status_dir and os.path.exists(status_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not status_dir or not os.path.exists(status_dir)  # the warm process removes its exit statuses


def test_a_forked_worker_runs_the_module_in_its_own_session_with_the_runners_environment(pool_and_env):
    pool, env, tmp_path = pool_and_env
    # Execute
    worker = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / "a.json"), "exit"], env)
    code = worker.wait(timeout=60)
    # Assert
    seen = json.loads((tmp_path / "a.json").read_text())
    assert code == 3 and worker.returncode == 3 and worker.poll() == 3  # its exit status, as Popen gives it
    assert seen["pid"] == worker.pid == seen["sid"]  # a session of its own, as preexec_fn=os.setsid makes
    assert seen["argv"] == [str(tmp_path / "a.json"), "exit"] and seen["mark"] == "from the runner"
    assert seen["cwd"] == os.getcwd()


def test_each_forked_worker_numbers_its_streams_from_its_own_base(pool_and_env):
    """Without a fresh base, workers forked from one process reuse each other's NVFlare stream ids, and the
    runner drops a result whose id it has seen."""
    pool, env, tmp_path = pool_and_env
    bases = []
    for name in ("a", "b", "c"):
        worker = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / f"{name}.json"), "exit"], env)
        worker.wait(timeout=60)
        bases.append(json.loads((tmp_path / f"{name}.json").read_text())["stream_base"])
    assert len(set(bases)) == 3


def test_the_runners_handle_times_out_terminates_and_reports_the_signal(pool_and_env):
    pool, env, tmp_path = pool_and_env
    worker = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / "s.json"), "sleep"], env)
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.2)
    assert worker.poll() is None
    worker.terminate()
    assert worker.wait(timeout=30) == -signal.SIGTERM


def test_the_runner_starts_workers_anew_when_the_warm_process_cannot_start(tmp_path, caplog):
    from omnifm_monai.flare.warm_workers import WORKER_MODULE, WarmWorkerPool, _SubprocessWithWarmWorkers

    launcher = _SubprocessWithWarmWorkers(WarmWorkerPool(preloaded=("no_such_module_anywhere",)))
    command = [sys.executable, "-m", WORKER_MODULE, "--help"]
    start = time.monotonic()
    process = launcher.Popen(command, shell=False, stdout=subprocess.DEVNULL)  # stdout: not the runner's call
    assert isinstance(process, subprocess.Popen) and not launcher.failed  # any other call is subprocess's own
    process.wait(timeout=120)
    process = launcher.Popen(command, shell=False, env=dict(os.environ))
    assert isinstance(process, subprocess.Popen) and process.wait(timeout=120) == 0  # NVFlare's own start
    assert "the warm worker process ended" in launcher.failed
    assert "warm simulator workers are off for this run" in caplog.text
    assert time.monotonic() - start < 240


def test_the_launch_is_patched_on_linux_unless_told_not_to(monkeypatch):
    from nvflare.private.fed.app.simulator import simulator_runner

    from omnifm_monai.flare import warm_workers

    monkeypatch.setattr(simulator_runner, "subprocess", subprocess)
    monkeypatch.setenv(warm_workers.COLD_WORKERS_ENV, "1")
    assert not warm_workers.patch_worker_launch() and simulator_runner.subprocess is subprocess
    monkeypatch.delenv(warm_workers.COLD_WORKERS_ENV)
    assert warm_workers.patch_worker_launch()
    patched = simulator_runner.subprocess
    assert isinstance(patched, warm_workers._SubprocessWithWarmWorkers)
    assert patched.TimeoutExpired is subprocess.TimeoutExpired  # the rest of subprocess is untouched
    assert warm_workers.patch_worker_launch() and simulator_runner.subprocess is patched  # idempotent


def test_the_launch_returns_once_the_worker_listens_on_its_port(pool_and_env):
    """The runner's first connection then succeeds, instead of being refused and retried a second later."""
    from nvflare.fuel.utils.network_utils import get_open_ports

    from omnifm_monai.flare.warm_workers import wait_until_listening

    pool, env, tmp_path = pool_and_env
    port = str(get_open_ports(1)[0])
    worker = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / "l.json"), "listen", port], env)
    sleeper = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / "n.json"), "sleep"], env)
    try:
        assert wait_until_listening(worker, port, timeout=30)
        assert not wait_until_listening(sleeper, port, timeout=0.5)  # another process's port is not its own
        assert not wait_until_listening(worker, "", timeout=0.5)  # no port given: nothing to wait for
    finally:
        worker.kill()
        sleeper.kill()
    assert worker.wait(timeout=30) == -signal.SIGKILL


def test_a_handle_reads_its_own_launchs_status_never_an_earlier_process_with_its_pid(tmp_path):
    """Pids are reused (32768 here, threads included): a status filed by pid would end a new worker at once."""
    from omnifm_monai.flare.warm_workers import ForkedWorker, WarmWorkerPool

    (tmp_path / str(os.getpid())).write_text("-15")  # what an earlier worker with this pid would have left
    worker = ForkedWorker(os.getpid(), 7, str(tmp_path), WarmWorkerPool())
    assert worker.poll() is None  # this process runs: no status of launch 7 yet
    (tmp_path / "7").write_text("0")
    assert worker.poll() == 0 and not (tmp_path / "7").exists()  # read once, then removed


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()  # reaped: no process has this pid until it is reused
    return process.pid


def test_only_status_folders_whose_processes_are_all_gone_are_removed(tmp_path):
    """A SIGKILLed warm process leaves its status folder behind; the next warm process's start removes it."""
    from omnifm_monai.flare.warm_workers import remove_stale_status_dirs

    # Prepare: folders of a dead pool, a live pool, a dead pool with a live warm process, an older version
    dead, live = _dead_pid(), os.getpid()
    stale, ours, warm_lives, older = (
        tmp_path / f"omnifm_warm_workers_{name}"
        for name in (f"pid{dead}_a", f"pid{live}_b", f"pid{dead}_c", "x1y2z3w4")
    )
    for folder in (stale, ours, warm_lives, older):
        folder.mkdir()
    (stale / "warm.pid").write_text(str(_dead_pid()))
    (stale / "3").write_text("0")  # an exit status nobody read
    (warm_lives / "warm.pid").write_text(str(live))
    not_a_folder = tmp_path / f"omnifm_warm_workers_pid{dead}_d"
    not_a_folder.write_text("")
    # Execute
    removed = remove_stale_status_dirs(str(tmp_path))
    # Assert
    assert removed == [str(stale)] and not stale.exists()
    assert ours.exists() and warm_lives.exists() and older.exists() and not_a_folder.exists()


def test_a_pool_names_its_status_folder_by_its_pid_and_removes_stale_ones_as_it_starts(pool_and_env, monkeypatch):
    import tempfile

    pool, env, tmp_path = pool_and_env
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    stale = temp_dir / f"omnifm_warm_workers_pid{_dead_pid()}_abc"  # what a killed run left
    stale.mkdir()
    # Execute
    worker = pool.launch([sys.executable, "-m", "fake_worker", str(tmp_path / "p.json"), "exit"], env)
    # Assert
    assert worker.wait(timeout=60) == 3 and not stale.exists()
    status_dir = pool._status_dir
    assert os.path.dirname(status_dir) == str(temp_dir)
    assert os.path.basename(status_dir).startswith(f"omnifm_warm_workers_pid{os.getpid()}_")
    assert (Path(status_dir) / "warm.pid").read_text() == str(pool._process.pid)
