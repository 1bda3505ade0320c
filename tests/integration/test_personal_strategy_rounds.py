"""One NVFlare simulator round (2 sites) per personalised strategy, checked from saved results and logs."""

import json
import math
import re

import numpy as np
import pytest
import torch
from simulator_run import simulate_many

OPTIONS = {"fedrep": {"head_epochs": 1}}  # one head epoch keeps the test short (default 10)
STRATEGIES = ["ditto", "fedrep", "moon", "gpfl", "omnifm"]  # omnifm as it is by default: no spectral path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every strategy's round, side by side: ``{strategy: (its folder, the simulator's and every site's log)}``."""
    options = {
        s: ["--strategy", s, "--strategy-options", json.dumps(OPTIONS.get(s, {})), "--samples-per-client", "20"]
        for s in STRATEGIES
    }
    return simulate_many(tmp_path_factory.mktemp("personal_rounds"), options)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_round_of_each_personal_strategy(strategy, runs):
    # Execute (the module's fixture ran every strategy's round)
    tmp_path, logs = runs[strategy]
    # Assert: the sites finished (the simulator can exit 0 after a client crashed) and trained a round
    assert "Traceback (most recent call last)" not in logs, logs[-3000:]
    assert "local training failed" not in logs, logs[-3000:]
    for site in ("site-1", "site-2"):
        assert re.search(rf"{site} round 0: \{{.*'train_seconds'", logs), f"no training round logged for {site}"
    server = tmp_path / "state" / "server"
    final = json.loads((server / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == ["site-1", "site-2"]
    for metrics in final.values():
        assert all(math.isfinite(v) for v in metrics.values()) and 0.0 <= metrics["restricted_accuracy"] <= 1.0
    record = json.loads((server / "server_state.json").read_text())["history"][0]
    assert sorted(record["accepted"]) == ["site-1", "site-2"] and record["rejected"] == {}
    assert all(a["model_bytes"] > 0 and a["spectral_bytes"] == 0 for a in record["accepted"].values())
    with np.load(server / "global_params.npz") as saved:
        shared = {k: saved[k] for k in saved.files}
    assert "backbone.conv1.weight" in shared and not any("private" in k for k in shared)
    sites = [tmp_path / "state" / s for s in ("site-1", "site-2")]
    if strategy in ("fedrep", "gpfl"):  # the head stayed at each site, and only there
        assert not any(k.startswith("task_head.") for k in shared)
        for site in sites:
            private = torch.load(site / f"private_{strategy}.pt", weights_only=True)
            assert {"task_head.weight", "task_head.bias"} <= set(private) and not set(private) & set(shared)
    if strategy == "omnifm":  # c, the norm layers and the head stayed home; no spectral path was built
        assert not any(k.startswith("tokenizer.") or "running_mean" in k for k in shared)
        for site in sites:
            private = torch.load(site / "private_omnifm.pt", weights_only=True)
            assert {"psp.private_suffix", "task_head.weight", "backbone.bn1.running_mean"} <= set(private)
            assert not set(private) & set(shared)
    if strategy == "gpfl":  # CoV and GCE averaged; the personal conditional input is the site's own
        assert {"gpfl.gce.weight", "gpfl.gamma.0.weight", "gpfl.beta.0.weight"} <= set(shared)
        for site in sites:
            private = torch.load(site / "private_gpfl.pt", weights_only=True)
            assert private["gpfl.private_personal_condition"].abs().sum() > 0
    if strategy == "ditto":  # each site's personal model is on its disk and is not the global model
        assert "task_head.weight" in shared
        for site in sites:
            personal = torch.load(site / "personalized_model.pt", weights_only=True)["model"]
            assert set(personal) == set(shared)
            assert not np.allclose(personal["task_head.weight"].numpy(), shared["task_head.weight"])
    if strategy == "moon":  # the previous local model for the next round is on each site's disk
        for site in sites:
            previous = torch.load(site / "moon_previous.pt", weights_only=True)
            assert set(previous) == set(shared)
            assert not np.allclose(previous["task_head.weight"].numpy(), shared["task_head.weight"])
