"""End to end in NVFlare POC mode: 2 sites x 2 FedAvg rounds, as separate processes over mTLS.

The checks read what the run left on disk (the controller's history and final metrics, the
sites' logs) and the process table, never exit codes: NVFlare can report success while a
site crashed.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import sys

import psutil
import pytest

pytestmark = pytest.mark.slow

SITES = ("site-1", "site-2")
ROUNDS = 2


def nvflare_missing() -> bool:
    return not (shutil.which("nvflare", path=os.path.dirname(sys.executable)) or shutil.which("nvflare"))


@pytest.fixture(scope="module")
def poc_run(tmp_path_factory):
    if nvflare_missing():
        pytest.skip("the `nvflare` command is not installed: POC mode needs NVFlare's CLI")
    from omnifm_monai.jobs.poc import export_poc_job, run_poc

    root = tmp_path_factory.mktemp("poc")
    job_argv = ["--strategy", "fedavg", "--clients", str(len(SITES)), "--rounds", str(ROUNDS)]
    job_argv += ["--image-size", "32", "--samples-per-client", "60", "--state-root", str(root / "state")]
    job_dir, num_clients = export_poc_job(job_argv, str(root / "jobs"))
    # a loaded machine can take over 60 s (2.9's default) to start the server's job process: the sites wait longer
    result = run_poc(
        job_dir, num_clients, str(root / "workspace"), timeout=300, env={"NVFLARE_MAX_RUNNER_SYNC_TIMEOUT": "300"}
    )
    return root, result


def test_job_completed(poc_run):
    _, result = poc_run
    assert result.job_id, result.problems
    assert result.status == "FINISHED:COMPLETED", result.problems


def test_final_metrics_of_every_site_are_finite(poc_run):
    root, _ = poc_run
    with open(root / "state" / "server" / "final_metrics.json") as f:
        final = json.load(f)
    assert final["round"] == ROUNDS
    assert sorted(final["metrics"]) == list(SITES)
    for site, metrics in final["metrics"].items():
        assert {"accuracy", "restricted_accuracy", "macro_f1"} <= set(metrics), site
        assert all(math.isfinite(value) for value in metrics.values()), (site, metrics)


def test_every_round_accepts_both_sites(poc_run):
    root, _ = poc_run
    with open(root / "state" / "server" / "server_state.json") as f:
        history = json.load(f)["history"]
    assert [record["round"] for record in history] == list(range(ROUNDS))
    for record in history:
        assert sorted(record["accepted"]) == list(SITES), record["round"]
        assert not record["rejected"], record["rejected"]


def test_no_log_has_a_traceback(poc_run):
    _, result = poc_run
    job_logs = sorted(glob.glob(os.path.join(result.prod_dir, "site-*", result.job_id, "log.txt")))
    assert [os.path.basename(os.path.dirname(os.path.dirname(p))) for p in job_logs] == list(SITES)
    logs = glob.glob(os.path.join(result.prod_dir, "site-*", "**", "log*.txt"), recursive=True)
    logs += glob.glob(os.path.join(result.result_dir, "workspace", "log*.txt"))  # the server's job log
    assert any(os.path.join("workspace", "log.txt") in p for p in logs), "server job log was not downloaded"
    for path in logs:
        with open(path, errors="replace") as f:
            assert "Traceback" not in f.read(), path


def test_every_poc_process_listens_on_loopback_only(poc_run):
    # the kit's server is named localhost, so NVFlare 2.9 binds 127.0.0.1 (POC's "server" binds 0.0.0.0)
    _, result = poc_run
    ports = {address.rsplit(":", 1)[1] for address in result.listening}
    assert result.listening and str(result.prod_dir) and len(ports) >= 1, result.listening
    assert all(address.startswith("127.") for address in result.listening), result.listening


def test_no_site_streams_its_logs(poc_run):
    _, result = poc_run
    for site in SITES:
        with open(os.path.join(result.prod_dir, site, "local", "resources.json.default")) as f:
            assert json.load(f)["allow_log_streaming"] is False, site


def test_poc_processes_are_stopped(poc_run):
    root, _ = poc_run
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if str(root) in cmdline:
            leftovers.append(f"{proc.pid}: {cmdline[:200]}")
    assert not leftovers, leftovers
