"""Fewer simulator threads than sites: workers forked from the warm process train exactly as NVFlare's own
new interpreters do, and no site's result is lost (read from the saved results and the logs)."""

import json

import pytest
from simulator_run import simulate_many

from omnifm_monai.flare.simulator import WARM_LOG_LINE
from omnifm_monai.flare.warm_workers import COLD_WORKERS_ENV

pytestmark = pytest.mark.slow


def test_one_thread_for_two_sites_trains_the_same_with_warm_and_with_new_workers(tmp_path):
    options = ["--rounds", "2", "--threads", "1", "--samples-per-client", "40", "--local-epochs", "1"]
    runs = simulate_many(
        tmp_path, {"warm": options, "cold": options}, parallel=2, timeout=600, env={"cold": {COLD_WORKERS_ENV: "1"}}
    )
    finals = {}
    for name, (folder, logs) in runs.items():
        assert "Traceback (most recent call last)" not in logs, logs[-3000:]
        assert "failed to send task result" not in logs  # a lost result (repeated stream ids) would show here
        assert "killed after" not in logs
        assert (WARM_LOG_LINE in logs) == (name == "warm")
        finals[name] = json.loads((folder / "state" / "server" / "final_metrics.json").read_text())["metrics"]
    assert sorted(finals["warm"]) == ["site-1", "site-2"]
    assert finals["warm"] == finals["cold"]  # every metric of every site, to the last digit
