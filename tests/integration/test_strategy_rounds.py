"""One NVFlare simulator round (2 sites, phantom classification, tiny sizes) per server-side baseline.

Checked from the saved server state, the sites' files and the logs, never the exit code alone.
"""

import json
import math
import re

import numpy as np
import pytest
import torch
from simulator_run import simulate_many

SITES = ["site-1", "site-2"]
TAU = 1e-3  # FedAdam's and FedYogi's default
STRATEGIES = ["fedadam", "fedyogi", "fedavgm", "scaffold", "feddyn"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every strategy's round, side by side: ``{strategy: (its folder, its logs)}``."""
    options = {s: ["--strategy", s, "--samples-per-client", "30"] for s in STRATEGIES}
    return simulate_many(tmp_path_factory.mktemp("server_side_rounds"), options)


def _weight_keys(state: dict[str, np.ndarray], prefix: str) -> list[str]:
    """The conv/linear weights among the aggregator's entries ``<prefix>/<key>``."""
    return [k for k in state if k.startswith(prefix + "/") and k.endswith("conv1.weight")]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_round_of_each_server_side_baseline(strategy, runs):
    # Execute (the module's fixture ran every strategy's round)
    tmp_path, logs = runs[strategy]
    # Assert: every site finished, both uploads accepted, finite final metrics
    assert "Traceback (most recent call last)" not in logs, logs[-3000:]
    server = tmp_path / "state" / "server"
    record = json.loads((server / "server_state.json").read_text())["history"][0]
    assert sorted(record["accepted"]) == SITES and record["rejected"] == {}, record
    final = json.loads((server / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == SITES
    assert all(math.isfinite(v) for metrics in final.values() for v in metrics.values())
    # the aggregator's own state was persisted beside the weights (a restarted server resumes it)
    with np.load(server / "aggregator_state.npz") as f:
        state = {k: f[k] for k in f.files}
    if strategy in ("fedadam", "fedyogi"):
        key = _weight_keys(state, "m")[0].removeprefix("m/")
        m, v = state[f"m/{key}"], state[f"v/{key}"]
        delta = m / 0.1  # one round: m = (1 - beta1) delta
        assert np.abs(delta).max() > 0
        if strategy == "fedadam":  # v = beta2 tau^2 + (1 - beta2) delta^2
            np.testing.assert_allclose(v, 0.99 * TAU**2 + 0.01 * delta**2, rtol=1e-5)
        else:  # v = tau^2 - (1 - beta2) delta^2 sign(tau^2 - delta^2)
            np.testing.assert_allclose(v, TAU**2 - 0.01 * delta**2 * np.sign(TAU**2 - delta**2), rtol=1e-5)
        assert not any("running_" in k or "num_batches" in k for k in state)  # statistics: the mean, no moments
    elif strategy == "fedavgm":
        assert _weight_keys(state, "m") and not any(k.startswith("v/") for k in state)
    else:  # SCAFFOLD's c, FedDyn's h: moved by the sites' uploads; both sites counted
        prefix = "c" if strategy == "scaffold" else "h"
        assert max(np.abs(state[k]).max() for k in _weight_keys(state, prefix)) > 0
        assert sorted(state["seen"].tolist()) == SITES
        for site in SITES:  # c_i / h_i stayed on each site's disk
            private = torch.load(tmp_path / "state" / site / f"private_{strategy}_strategy.pt", weights_only=True)
            assert any(name.endswith("conv1.weight") for name in private)
    # what each site reported sending beyond the weights: SCAFFOLD's delta, as big as the float parameters
    control = [int(n) for n in re.findall(r"'upload_control_bytes': (\d+)", logs)]
    assert len(control) >= 2, "both sites log their round's upload sizes"
    if strategy == "scaffold":
        assert all(0 < n <= record["accepted"]["site-1"]["model_bytes"] for n in control)
    else:
        assert set(control) == {0}
