"""Faults injected into a simulated federation: a crashed round, NaN weights, a token flood, a stalled site.

The sites run ``faulty_client.py`` (see its docstring); the run must finish every round with the
healthy sites (a stalled site is given up after the round timeout), reject the bad uploads without
touching the global state, and take the crashed and the stalled site back in the next round.
"""

import glob
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from simulator_run import run_bounded

from omnifm_monai.knowledge import SpectralKnowledgeBase

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("faults")
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job",
        "--strategy", "omnifm", "--strategy-options", '{"spectral":true}',  # faults in the spectral upload too
        "--clients", "3", "--rounds", "4", "--threads", "3", "--train-timeout", "30",
        "--image-size", "32", "--samples-per-client", "40",
        "--client-script", str(Path(__file__).with_name("faulty_client.py")),
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / "ws"),
    ]  # fmt: skip
    done = run_bounded(command, timeout=900)
    logs = {
        path: Path(path).read_text(errors="replace")
        for path in glob.glob(str(tmp_path / "ws" / "**" / "log*.txt"), recursive=True)
    }
    state = json.loads((tmp_path / "state" / "server" / "server_state.json").read_text())
    server_log = logs.get(str(tmp_path / "ws" / "server" / "log.txt"), "")
    return tmp_path / "state" / "server", state, done.stdout + done.stderr + "".join(logs.values()), server_log


def test_every_round_completed_with_the_healthy_sites(faulty_run):
    _, state, logs, _ = faulty_run
    history = state["history"]
    assert [r["round"] for r in history] == [0, 1, 2, 3], logs[-3000:]
    assert sorted(history[0]["accepted"]) == ["site-1", "site-3"]
    assert sorted(history[1]["accepted"]) == ["site-2"]  # the crashed site is back
    assert sorted(history[2]["accepted"]) == ["site-2", "site-3"] and history[2]["no_result"] == ["site-1"]
    assert sorted(history[3]["accepted"]) == ["site-1", "site-2", "site-3"]  # the stalled site is back


def test_each_fault_was_rejected_with_its_reason(faulty_run):
    _, state, logs, server_log = faulty_run
    assert "training failed" in state["history"][0]["rejected"]["site-2"]
    assert "NaN" in state["history"][1]["rejected"]["site-3"]
    assert "spectral tokens uploaded" in state["history"][1]["rejected"]["site-1"]
    assert "injected fault: training crashed" in logs  # the crash is in the site's log, with its traceback
    assert server_log.count("rejected upload from") == 3, server_log[-3000:]


def test_global_state_untouched_by_the_bad_uploads(faulty_run):
    server, *_ = faulty_run
    with np.load(server / "global_params.npz") as saved:
        assert all(np.isfinite(saved[k]).all() for k in saved.files)
    kb = SpectralKnowledgeBase.load(server / "knowledge_base.npz")
    round_one_sources = set(kb.sources[kb.rounds == 1].tolist())
    assert round_one_sources <= {"site-2"}  # neither the flood nor the NaN site added tokens in round 1
    assert len(kb) < 256


def test_every_site_evaluated_the_final_model(faulty_run):
    server, *_ = faulty_run
    final = json.loads((server / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == ["site-1", "site-2", "site-3"]
    assert all(math.isfinite(v) for metrics in final.values() for v in metrics.values())
