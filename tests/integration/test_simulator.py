"""OmniFM through the NVFlare simulator, checked from saved results and logs (never the exit code alone)."""

import glob
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from simulator_run import run_bounded

from omnifm_monai.flare.simulator import PATCHED_LOG_LINE
from omnifm_monai.knowledge import SpectralKnowledgeBase

REPO = Path(__file__).resolve().parents[2]
PRIVATE_KEYS = {
    "psp.private_suffix",
    "spectral_memory.private_prototypes",
    "spectral_memory.private_num_prototypes",
    "spectral_memory.private_prototype_labels",
}

pytestmark = pytest.mark.slow


def _simulate(tmp_path: Path, rounds: int) -> str:
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job",
        # the spectral path (off by default) with label-aware prototypes; tasks' runs cover the unlabelled path
        "--strategy", "omnifm", "--strategy-options", '{"spectral":true,"label_prototypes":true}',
        "--clients", "2", "--rounds", str(rounds), "--threads", "2",
        "--image-size", "32", "--samples-per-client", "40",
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / f"ws{rounds}"),
    ]  # fmt: skip
    done = run_bounded(command, timeout=600)
    logs = done.stdout + done.stderr
    for path in glob.glob(str(tmp_path / f"ws{rounds}" / "**" / "log*.txt"), recursive=True):
        logs += Path(path).read_text(errors="replace")
    return logs


@pytest.fixture(scope="module")
def federated_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("simulator")
    first = _simulate(tmp_path, rounds=1)
    state = json.loads((tmp_path / "state" / "server" / "server_state.json").read_text())
    second = _simulate(tmp_path, rounds=2)  # same state root: resumes at round 1
    return tmp_path, first, state, second


def test_every_site_finished_without_error(federated_runs):
    tmp_path, first, _, second = federated_runs
    assert "Traceback (most recent call last)" not in first, first[-3000:]
    assert "Traceback (most recent call last)" not in second, second[-3000:]
    assert PATCHED_LOG_LINE in first and PATCHED_LOG_LINE in second  # the simulator ran with the name-race fix
    final = json.loads((tmp_path / "state" / "server" / "final_metrics.json").read_text())
    assert sorted(final["metrics"]) == ["site-1", "site-2"]
    for metrics in final["metrics"].values():
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0.0 <= metrics["restricted_accuracy"] <= 1.0


def test_uploads_accepted_and_no_private_key_reached_the_server(federated_runs):
    tmp_path, _, first_state, _ = federated_runs
    record = first_state["history"][0]
    assert sorted(record["accepted"]) == ["site-1", "site-2"] and record["rejected"] == {}
    assert all(a["model_bytes"] > 0 and a["spectral_bytes"] > 0 for a in record["accepted"].values())
    with np.load(tmp_path / "state" / "server" / "global_params.npz") as saved:
        shared = set(saved.files)
    assert "backbone.conv1.weight" in shared and "tokenizer.projection.weight" in shared
    for site in ("site-1", "site-2"):  # the private part stayed on each site's disk, and only there
        private = set(torch.load(tmp_path / "state" / site / "private_omnifm.pt", weights_only=True))
        assert PRIVATE_KEYS <= private and not private & shared


def test_knowledge_base_grew_and_was_persisted(federated_runs):
    tmp_path, _, first_state, _ = federated_runs
    assert first_state["history"][0]["knowledge_base_size"] > 0
    kb = SpectralKnowledgeBase.load(tmp_path / "state" / "server" / "knowledge_base.npz")
    assert len(kb) > 0 and set(kb.sources.tolist()) == {"site-1", "site-2"}
    assert (kb.labels >= 0).all()  # every centroid came with the shared class it summarises


def test_second_run_resumes_at_the_next_round(federated_runs):
    tmp_path, _, _, second = federated_runs
    state = json.loads((tmp_path / "state" / "server" / "server_state.json").read_text())
    assert [r["round"] for r in state["history"]] == [0, 1]
    assert "resumed from" in second
    restored = dict(re.findall(r"(site-\d): \d+ training images, private keys restored: (\d+)", second))
    assert sorted(restored) == ["site-1", "site-2"]  # both sites picked their private state back up
    assert all(int(n) > len(PRIVATE_KEYS) for n in restored.values())
    # round 1's sites received prototypes retrieved from the other site, each with its class
    assert state["history"][1]["seconds"]["retrieval"] > 0
    for site in ("site-1", "site-2"):
        private = torch.load(tmp_path / "state" / site / "private_omnifm.pt", weights_only=True)
        count = int(private["spectral_memory.private_num_prototypes"])
        labels = private["spectral_memory.private_prototype_labels"]
        assert count > 0 and (labels[:count] >= 0).all() and (labels[count:] == -1).all()
