"""POC mode with a real ``kill -9``: one site's job process dies, the job goes on without it.

2 sites x 2 FedAvg rounds; after round 0 is saved, site-2's job process is killed with SIGKILL (by
its pid). NVFlare deems the site dead ``dead_client_grace_period`` seconds after its job process is
missing (5 s here, 60 s by default, through ``NVFLARE_DEAD_CLIENT_GRACE_PERIOD``) and ends its
tasks as ``CLIENT_DEAD``; the job's ``min_clients`` (1) keeps the job alive. The checks read the
controller's history, the final metrics and the server's log, never exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import psutil
import pytest

pytestmark = [
    pytest.mark.slow,
    # opt-in (OMNIFM_RUN_POC_KILL=1) while it fails: on 2026-12-01 the kill hit site-2's job process and the job
    # still ended FINISHED:EXECUTION_EXCEPTION, so --min-clients alone does not keep a job alive (issue 17, item 3)
    pytest.mark.skipif(
        os.environ.get("OMNIFM_RUN_POC_KILL") != "1",
        reason="opt-in (OMNIFM_RUN_POC_KILL=1): the job still fails after a site's kill -9 (issue 17, item 3)",
    ),
]

SITES = ("site-1", "site-2")
KILLED = "site-2"
ROUNDS = 2
FAST_DEAD_CLIENT = {"NVFLARE_DEAD_CLIENT_GRACE_PERIOD": "5", "NVFLARE_DEAD_CLIENT_CHECK_LEAD_TIME": "5"}
# a loaded machine can take over 60 s (2.9's default) to start the server's job process: the sites wait longer
SLOW_START = {"NVFLARE_MAX_RUNNER_SYNC_TIMEOUT": "300"}


def _job_processes(result, site: str) -> list[psutil.Process]:
    """The job's worker process(es) on ``site``: command line names the job id and the site's kit folder."""
    from omnifm_monai.jobs.poc import poc_processes

    kit = os.path.join(result.prod_dir, site)
    found = []
    for proc in poc_processes(result.poc_workspace):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if result.job_id in cmdline and kit in cmdline and "sub_start.sh" not in cmdline:
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    if not (shutil.which("nvflare", path=os.path.dirname(sys.executable)) or shutil.which("nvflare")):
        pytest.skip("the `nvflare` command is not installed: POC mode needs NVFlare's CLI")
    from omnifm_monai.jobs.poc import export_poc_job, run_poc

    root = tmp_path_factory.mktemp("poc_kill")
    job_argv = ["--strategy", "fedavg", "--clients", str(len(SITES)), "--rounds", str(ROUNDS)]
    job_argv += ["--image-size", "32", "--samples-per-client", "40", "--state-root", str(root / "state")]
    job_dir, num_clients = export_poc_job(job_argv, str(root / "jobs"))
    killed: list[str] = []

    def kill_after_round_0(result) -> None:
        state_file = os.path.join(result.state_dir, "server_state.json")
        if killed or not result.job_id or not os.path.isfile(state_file):
            return
        with open(state_file) as f:
            if not json.load(f)["history"]:
                return
        for proc in _job_processes(result, KILLED):
            proc.send_signal(signal.SIGKILL)
            killed.append(f"{proc.pid}: {' '.join(proc.info['cmdline'])[:300]}")

    workspace = str(root / "workspace")
    result = run_poc(
        job_dir, num_clients, workspace, 360, env={**FAST_DEAD_CLIENT, **SLOW_START}, while_running=kill_after_round_0
    )
    return root, result, killed


def test_the_site_job_process_was_killed_and_the_job_still_completed(killed_run):
    _, result, killed = killed_run
    assert len(killed) == 1, killed  # exactly the one worker process of site-2's job
    assert result.status == "FINISHED:COMPLETED", (result.status, result.problems)


def test_rounds_after_the_kill_go_on_without_the_dead_site(killed_run):
    root, _, _ = killed_run
    with open(root / "state" / "server" / "server_state.json") as f:
        state = json.load(f)
    history = state["history"]
    assert state["round"] == ROUNDS and [record["round"] for record in history] == list(range(ROUNDS))
    assert sorted(history[0]["accepted"]) == list(SITES)
    assert sorted(history[-1]["accepted"]) == ["site-1"] and KILLED in history[-1]["no_result"], history[-1]
    with open(root / "state" / "server" / "final_metrics.json") as f:
        final = json.load(f)
    assert final["round"] == ROUNDS and sorted(final["metrics"]) == ["site-1"]


def test_the_server_log_says_the_site_is_dead(killed_run):
    _, result, _ = killed_run
    with open(os.path.join(result.result_dir, "workspace", "log.txt"), errors="replace") as f:
        log = f.read()
    assert f"Client {KILLED} is deemed disconnected" in log
    assert "Aborting job" not in log


def test_every_poc_process_is_stopped(killed_run):
    root, _, _ = killed_run
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(root) in " ".join(p.info["cmdline"] or ())]
    assert not leftovers, leftovers
