"""Every non-classification task through the same NVFlare job, controller and client (only --task changes)."""

import json
import math

import numpy as np
import pytest
import torch
from simulator_run import simulate_many

from omnifm_monai.tasks import get_task

TASKS = ["segmentation", "super_resolution", "vqa", "fusion"]
PRIVATE_KEYS = {
    "psp.private_suffix",
    "spectral_memory.private_prototypes",
    "spectral_memory.private_num_prototypes",
    "spectral_memory.private_prototype_labels",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every task's round, side by side: 2 sites (two modalities or modality pairs), 1 round, tiny data."""
    spectral = ["--strategy-options", '{"spectral":true}']  # OmniFM's spectral path, off by default
    options = {t: ["--task", t, "--strategy", "omnifm", *spectral, "--samples-per-client", "30"] for t in TASKS}
    return simulate_many(tmp_path_factory.mktemp("task_rounds"), options)


@pytest.mark.parametrize("task", TASKS)
def test_one_omnifm_round_of_each_task(task, runs):
    # Execute (the module's fixture ran every task's round)
    tmp_path, logs = runs[task]
    # Assert: the clients finished (the simulator can exit 0 after a client crashed)
    assert "Traceback (most recent call last)" not in logs, logs[-3000:]
    server = tmp_path / "state" / "server"
    final = json.loads((server / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == ["site-1", "site-2"]
    headline = get_task(task).headline_metric
    for metrics in final.values():
        assert headline in metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    # both uploads accepted, each with its clustered spectral centroids; the knowledge base grew
    record = json.loads((server / "server_state.json").read_text())["history"][0]
    assert sorted(record["accepted"]) == ["site-1", "site-2"] and record["rejected"] == {}
    assert all(a["spectral_bytes"] > 0 for a in record["accepted"].values())
    assert record["knowledge_base_size"] > 0
    # no private key reached the server; each site kept its own on its disk
    with np.load(server / "global_params.npz") as saved:
        shared = set(saved.files)
    assert "tokenizer.projection.weight" in shared and not any("private" in k for k in shared)
    assert not any(k.startswith("task_head.") for k in shared)  # omnifm keeps the task head at home
    for site in ("site-1", "site-2"):
        private = set(torch.load(tmp_path / "state" / site / "private_omnifm.pt", weights_only=True))
        assert PRIVATE_KEYS <= private and not private & shared
