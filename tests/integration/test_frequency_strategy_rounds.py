"""The frequency-domain peers (feddg_elcfs, harmofl) through the NVFlare simulator: one round, two sites."""

import json
import math
import re

import numpy as np
import pytest
from simulator_run import simulate_many

SAMPLES = 24  # per site; FedDG-ELCFS uploads the spectra of 1/8 of a site's training images
STRATEGIES = ["feddg_elcfs", "harmofl"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both strategies' rounds, side by side: ``{strategy: (its folder, its logs)}``."""
    options = {s: ["--strategy", s, "--samples-per-client", str(SAMPLES)] for s in STRATEGIES}
    return simulate_many(tmp_path_factory.mktemp("frequency_rounds"), options)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_round_of_each_frequency_strategy(strategy, runs):
    # Execute (the module's fixture ran both strategies' rounds)
    tmp_path, logs = runs[strategy]
    # Assert: the clients finished (the simulator can exit 0 after a client crashed)
    assert "Traceback (most recent call last)" not in logs, logs[-3000:]
    server = tmp_path / "state" / "server"
    final = json.loads((server / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == ["site-1", "site-2"]
    for metrics in final.values():
        assert all(math.isfinite(v) for v in metrics.values()) and 0.0 <= metrics["restricted_accuracy"] <= 1.0
    state = json.loads((server / "server_state.json").read_text())
    record = state["history"][0]
    assert state["strategy"] == strategy
    assert sorted(record["accepted"]) == ["site-1", "site-2"] and record["rejected"] == {}
    with np.load(server / "global_params.npz") as saved:
        assert "task_head.weight" in saved.files and not any("private" in k for k in saved.files)
    spectral = {site: a["spectral_bytes"] for site, a in record["accepted"].items()}
    if strategy == "feddg_elcfs":
        # each site's training share -> floor(n / 8) spectra of (C, 1, 1) float32, as the site reported
        for site in record["accepted"]:
            sent = record["metrics"][site]["upload_spectral_bytes"]
            assert spectral[site] == sent > 0 and sent % 4 == 0
        # the final task carried the other site's spectra to each site
        banks = [int(n) for n in re.findall(r"feddg_elcfs: (\d+) amplitude spectra of other sites", logs)]
        assert 0 in banks and max(banks) > 0, banks  # empty in round 0, filled for the final task
    else:
        assert spectral == {"site-1": 0, "site-2": 0}  # HarmoFL sends only the shared weights
