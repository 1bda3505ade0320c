"""Run an exported OmniFM-MONAI job end to end in NVFlare POC mode on this machine (what ``PocEnv`` does not do).

POC mode runs the server and every site as separate processes that talk over mTLS on
``localhost``, as a provisioned deployment does, with startup kits made by ``nvflare poc
prepare``. The sequence (``docs/running.md`` gives the same steps by hand)::

    nvflare poc prepare -n 2 --force     # startup kits in $NVFLARE_POC_WORKSPACE
    nvflare poc prepare -i project.yml   # again, from its project.yml edited: server "localhost"
                                         # (it then binds 127.0.0.1, not every interface), our port,
                                         # allow_log_streaming off
    nvflare poc start                     # server + sites; the admin console is not started
    (FLARE API) submit_job, monitor, download_job_result   # as the POC project admin
    nvflare poc stop                      # always, even after a failure

The job is submitted with the FLARE API rather than ``nvflare job submit``: in 2.9 that
command parses and rewrites every ``.json``/``.conf`` file under the apps' ``custom/``
folders, which breaks the shipped bundle (see :func:`_submit_and_wait`).

``python -m nvflare_jobs.poc`` is the command line over :func:`export_poc_job` and :func:`run_poc`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil
import yaml

from omnifm_monai.jobs.builder import export_job
from omnifm_monai.jobs.settings import parse_job_args

__all__ = [
    "PocResult",
    "run_poc",
    "export_poc_job",
    "poc_processes",
    "listening_sockets",
    "nvflare_cli",
    "job_sites",
    "job_state_dir",
]

ADMIN_USER = "admin@nvidia.com"  # the project admin `nvflare poc prepare` creates
DEFAULT_PORT = 8002  # NVFlare's POC server port (admin commands share it in 2.9)
COMPLETED = "FINISHED:COMPLETED"
STOP_GRACE_SECONDS = 60  # `poc stop` returns before the sites' restart loops have exited
SERVER_NAME = "localhost"  # the POC server's participant name: its kit's target, so NVFlare binds loopback
SITES_CONNECT_SECONDS = 120  # how long a submit waits for every site of the job to be connected


@dataclass
class PocResult:
    """What a POC run produced and where it left it."""

    job_id: str
    status: str  # NVFlare job status, e.g. "FINISHED:COMPLETED"; "NOT_SUBMITTED" when it never ran
    seconds: float
    workspace: str  # folder of this run: POC kits, CLI settings, downloaded results
    poc_workspace: str  # $NVFLARE_POC_WORKSPACE
    prod_dir: str  # the startup kits (<poc_workspace>/<project>/prod_00)
    state_dir: str  # the controller's state_dir: server_state.json and final_metrics.json
    result_dir: str = ""  # the server's job workspace (logs, tb_events), from `nvflare job download`
    site_logs: dict[str, str] = field(default_factory=dict)  # site -> log.txt of the job on that site
    listening: list[str] = field(default_factory=list)  # "ip:port" every POC process listened on (while running)
    problems: list[str] = field(default_factory=list)  # a timeout, a failed stop, killed leftovers

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


def nvflare_cli() -> str:
    """The ``nvflare`` command of this Python environment (the venv's first, then ``PATH``)."""
    found = shutil.which("nvflare", path=os.path.dirname(sys.executable)) or shutil.which("nvflare")
    if not found:
        raise FileNotFoundError("the `nvflare` command was not found (pip install nvflare).")
    return found


def poc_processes(poc_workspace: str) -> list[psutil.Process]:
    """Live processes of the POC system in ``poc_workspace`` (their command line names that folder)."""
    marker = os.path.abspath(poc_workspace)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def listening_sockets(poc_workspace: str) -> list[str]:
    """``"ip:port"`` of every TCP socket a live POC process of ``poc_workspace`` listens on, sorted."""
    found = set()
    for proc in poc_processes(poc_workspace):
        try:
            connections = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found.update(f"{c.laddr.ip}:{c.laddr.port}" for c in connections if c.status == psutil.CONN_LISTEN)
    return sorted(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) == 0


class _Cli:
    """Runs ``nvflare --format json ...`` with this run's environment and returns the JSON ``data``."""

    def __init__(self, env: dict[str, str], log_path: str) -> None:
        self.command = nvflare_cli()
        self.env = env
        self.log_path = log_path

    def __call__(self, *args: str, timeout: float = 300.0, check: bool = True) -> dict:
        argv = [self.command, "--format", "json", *args]
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            returncode, stdout = -1, _text(e.stdout)
            stderr = _text(e.stderr) + f"\ntimed out after {timeout} s"
        seconds = time.perf_counter() - start
        with open(self.log_path, "a") as log:
            log.write(f"$ {' '.join(argv[1:])}  # rc {returncode}, {seconds:.1f} s\n{stdout}{stderr}\n")
        envelope = _last_json(stdout)
        print(f"[poc] nvflare {' '.join(args[:2])}: rc {returncode}, {seconds:.1f} s", flush=True)
        if check and (returncode != 0 or envelope.get("status") != "ok"):
            detail = envelope or (stderr or stdout).strip()[-2000:]
            raise RuntimeError(f"`nvflare {' '.join(args)}` failed (exit code {returncode}): {detail}")
        return envelope.get("data") or {}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def job_sites(job_dir: str) -> list[str]:
    """The client sites a job folder deploys to (from its ``meta.json`` deploy map)."""
    with open(os.path.join(job_dir, "meta.json")) as f:
        deploy_map = json.load(f).get("deploy_map", {})
    return sorted({s for sites in deploy_map.values() for s in sites if s not in ("server", "@ALL")})


def job_state_dir(job_dir: str) -> str:
    """The OmniFM controller's ``state_dir`` in an exported job (empty if the controller has none)."""
    with open(os.path.join(job_dir, "app_server", "config", "config_fed_server.json")) as f:
        config = json.load(f)
    for workflow in config.get("workflows", []):
        if workflow.get("path", "").endswith("OmniFMController"):
            return workflow.get("args", {}).get("state_dir", "")
    return ""


def _prepare(cli: _Cli, workspace: str, num_clients: int, port: int) -> None:
    """``nvflare poc prepare``, then provision again from its project.yml edited for a loopback-only run.

    The edits: the server participant is named ``localhost`` (NVFlare 2.9 binds the server on the
    host of its kit's target, ``<server name>:<port>``: a loopback name binds 127.0.0.1, POC's own
    ``server`` binds every interface), the port is ``port``, and no site streams its logs to the
    server (``allow_log_streaming``, project-wide: 2.9 ignores a participant's own ``false``).
    """
    cli("poc", "prepare", "-n", str(num_clients), "--force")
    poc_workspace = cli.env["NVFLARE_POC_WORKSPACE"]
    with open(os.path.join(poc_workspace, "project.yml")) as f:
        project = yaml.safe_load(f)
    project["allow_log_streaming"] = False
    for participant in project["participants"]:
        if participant.get("type") == "server":
            participant["name"] = SERVER_NAME
            participant["fed_learn_port"] = port
            participant.pop("admin_port", None)  # 2.9: the admin port defaults to fed_learn_port
    project_file = os.path.join(workspace, "project.yml")  # must live outside the POC workspace
    with open(project_file, "w") as f:
        yaml.safe_dump(project, f, sort_keys=False)
    cli("poc", "prepare", "-i", project_file, "--force")


def _stop(cli: _Cli, poc_workspace: str, problems: list[str]) -> None:
    """``nvflare poc stop``, wait until every POC process exits, kill (by pid) those that outlive the wait."""
    if not os.path.isfile(os.path.join(poc_workspace, "project.yml")):
        return  # never prepared: nothing was started
    try:
        cli("poc", "stop", timeout=120)
    except Exception as e:  # noqa: BLE001 - the processes are checked below either way
        problems.append(f"poc stop: {e}")
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while poc_processes(poc_workspace) and time.monotonic() < deadline:
        time.sleep(1)
    left = poc_processes(poc_workspace)
    if not left:
        return
    problems.append(f"{len(left)} POC processes outlived `poc stop` by {STOP_GRACE_SECONDS} s; killed them")
    # the restart loops (sub_start.sh) first, or they would start the services again
    for proc in sorted(left, key=lambda p: "sub_start.sh" not in " ".join(p.info["cmdline"] or ())):
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(left, timeout=10)


def _wait_for_sites(session, sites: list[str], problems: list[str]) -> None:
    """Wait until every site of the job is connected (the job starts with ``min_clients`` of them)."""
    deadline = time.monotonic() + SITES_CONNECT_SECONDS
    while True:
        connected = {client.name for client in session.get_system_info().client_info}
        if set(sites) <= connected:
            return
        if time.monotonic() > deadline:
            problems.append(f"sites {sorted(set(sites) - connected)} not connected after {SITES_CONNECT_SECONDS} s")
            return
        time.sleep(1.0)


def _submit_and_wait(
    kit: str,
    job_dir: str,
    timeout: float,
    download_to: str,
    problems: list[str],
    on_poll: Callable[[str, str], None] | None = None,
) -> tuple[str, str, str]:
    """Submit ``job_dir`` as the POC project admin, wait for it; returns ``(job id, status, result folder)``.

    Uses the FLARE API, which uploads the folder as it is: ``nvflare job submit`` (2.9) parses and
    rewrites every ``.json``/``.conf`` file under ``custom/`` as an NVFlare config, which breaks
    the shipped bundle (a ``logging.conf`` fails to parse, dotted keys of ``metadata.json`` nest).
    ``on_poll(job_id, status)`` is called at every status poll (every 2 s).
    """
    from nvflare.fuel.flare_api.flare_api import MonitorReturnCode, new_secure_session

    session = new_secure_session(ADMIN_USER, kit, timeout=60.0)
    try:
        _wait_for_sites(session, job_sites(job_dir), problems)
        job_id = session.submit_job(job_dir)
        print(f"[poc] job {job_id} submitted; waiting up to {timeout:.0f} s", flush=True)
        seen: list[str] = []

        def report(_session, _job_id, meta: dict) -> bool:
            if meta.get("status") not in seen[-1:]:
                seen.append(meta.get("status"))
                print(f"[poc] job {job_id}: {seen[-1]}", flush=True)
            if on_poll is not None:
                on_poll(job_id, meta.get("status", ""))
            return True

        code, meta = session.monitor_job_and_return_job_meta(job_id, timeout=timeout, poll_interval=2.0, cb=report)
        if code != MonitorReturnCode.JOB_FINISHED:
            status = session.get_job_meta(job_id).get("status", "UNKNOWN")
            problems.append(f"job not finished after {timeout:.0f} s ({status}): aborted")
            session.abort_job(job_id)
            return job_id, status, ""
        result_dir = session.download_job_result(job_id, download_to) if download_to else ""
        return job_id, meta.get("status", "UNKNOWN"), result_dir or ""
    finally:
        session.close()


def run_poc(
    job_dir: str,
    num_clients: int = 2,
    workspace: str = "runs/poc/workspace",
    timeout: float = 600.0,
    *,
    port: int = 0,
    download: bool = True,
    env: Mapping[str, str] | None = None,
    while_running: Callable[[PocResult], None] | None = None,
) -> PocResult:
    """Prepare a POC system, run ``job_dir`` on it until it finishes, stop the system (always).

    Args:
        job_dir: an exported job folder (``python -m nvflare_jobs.omnifm_job --export DIR``).
        num_clients: number of POC sites (``site-1`` ... ``site-N``); the job must deploy to these.
        workspace: this run's folder (recreated): ``poc/`` holds the startup kits and the sites'
            workspaces, ``home/`` the NVFlare CLI settings, ``results/`` the server's job workspace.
        timeout: seconds the job may run before it is aborted.
        port: the server's port on localhost; 0 picks a free one, 8002 is NVFlare's default.
        download: fetch the server's job workspace (log, TensorBoard events) into ``results/``.
        env: extra environment of the POC processes (e.g. ``NVFLARE_DEAD_CLIENT_GRACE_PERIOD``).
        while_running: called with the result (``job_id`` set) at every status poll of the job,
            e.g. to inject a fault; the sockets the POC processes listen on are recorded then too.

    Returns:
        a :class:`PocResult`; ``result.ok`` tells whether the job completed. Results of the
        OmniFM controller land in ``result.state_dir`` (set when the job was exported).

    Raises:
        ValueError: the job deploys to sites that ``num_clients`` POC sites do not cover.
        RuntimeError: the POC system could not be prepared or started, or the job not submitted.
    """
    job_dir = os.path.abspath(job_dir)
    if not os.path.isfile(os.path.join(job_dir, "meta.json")):
        raise ValueError(f"job_dir {job_dir!r} is not a job folder (no meta.json).")
    poc_sites = [f"site-{i + 1}" for i in range(num_clients)]
    missing = sorted(set(job_sites(job_dir)) - set(poc_sites))
    if missing:
        raise ValueError(f"the job deploys to {missing}, which num_clients={num_clients} POC sites do not include.")
    port = port or free_port()
    if port_in_use(port):
        raise RuntimeError(f"port {port} on localhost is in use (another POC system?); choose another port.")

    workspace = os.path.abspath(workspace)
    poc_workspace = os.path.join(workspace, "poc")
    ours = any(os.path.exists(os.path.join(workspace, name)) for name in ("poc", "home", "nvflare_cli.log"))
    if os.path.isdir(workspace) and os.listdir(workspace) and not ours:
        raise ValueError(f"workspace {workspace!r} is not empty and holds no earlier POC run: choose another.")
    if os.path.isdir(poc_workspace) and poc_processes(poc_workspace):
        raise RuntimeError(f"a POC system is still running in {poc_workspace}; run `nvflare poc stop` there first.")
    shutil.rmtree(workspace, ignore_errors=True)
    os.makedirs(os.path.join(workspace, "home"))
    env = {**os.environ, **(env or {}), "NVFLARE_POC_WORKSPACE": poc_workspace, "HOME": os.path.join(workspace, "home")}
    cli = _Cli(env, os.path.join(workspace, "nvflare_cli.log"))
    result = PocResult("", "NOT_SUBMITTED", 0.0, workspace, poc_workspace, "", job_state_dir(job_dir))
    if os.path.isfile(os.path.join(result.state_dir, "server_state.json")):
        print(f"[poc] {result.state_dir} holds an earlier run: the job resumes it", flush=True)
    start = time.perf_counter()
    try:
        _prepare(cli, workspace, num_clients, port)
        result.prod_dir = sorted(glob.glob(os.path.join(poc_workspace, "*", "prod_*")))[-1]
        kit = os.path.join(result.prod_dir, ADMIN_USER)
        cli("poc", "start", "--timeout", "180", timeout=240)

        def on_poll(job_id: str, status: str) -> None:
            result.job_id, result.status = job_id, status
            result.listening = sorted(set(result.listening) | set(listening_sockets(poc_workspace)))
            if while_running is not None:
                while_running(result)

        result.listening = listening_sockets(poc_workspace)
        result.job_id, result.status, result.result_dir = _submit_and_wait(
            kit, job_dir, timeout, os.path.join(workspace, "results") if download else "", result.problems, on_poll
        )
    finally:
        _stop(cli, poc_workspace, result.problems)
        result.seconds = time.perf_counter() - start
    for site in poc_sites:
        log = os.path.join(result.prod_dir, site, result.job_id, "log.txt")
        if result.job_id and os.path.isfile(log):
            result.site_logs[site] = log
    return result


def export_poc_job(job_argv: list[str], export_dir: str, fresh: bool = False) -> tuple[str, int]:
    """Export a job with ``nvflare_jobs.omnifm_job``'s options; returns ``(job folder, number of sites)``.

    Args:
        job_argv: job options; POC defaults (``--image-size 32 --samples-per-client 60 --state-root
            runs/poc/state``) come first, so these win.
        export_dir: where the job folder is exported.
        fresh: delete the state root first (else the controller resumes an earlier run's state).

    Raises:
        ValueError: ``job_argv`` holds ``--workspace`` or ``--export`` (the simulator's and the export's).
    """
    defaults = ["--image-size", "32", "--samples-per-client", "60", "--state-root", "runs/poc/state"]
    settings, args = parse_job_args(defaults + job_argv)
    if args.workspace or args.export:
        raise ValueError("--workspace and --export belong to nvflare_jobs.omnifm_job, not to POC runs.")
    if fresh:
        shutil.rmtree(settings.state_root, ignore_errors=True)
    return export_job(settings, export_dir, save_settings=True), settings.num_clients
