"""A site whose --dataset-dir is missing: the job goes on with the others, then ends nonzero with a summary
naming the site and its error (the NVFlare simulator itself exits 0 after a client crash)."""

import json
import sys

import pytest
from simulator_run import run_bounded

from tests.data.test_federation_classes import write_class_folders

pytestmark = pytest.mark.slow


def test_a_site_without_its_data_fails_the_job_with_a_summary(tmp_path):
    # Prepare: site-1 has a tiny folder export, site-2's folder does not exist
    write_class_folders(tmp_path / "data" / "site-1", ("CT", "X-ray"), per_class=3)
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job", "--strategy", "fedavg", "--clients", "2", "--rounds", "1",
        "--threads", "2", "--image-size", "16", "--dataset-dir", str(tmp_path / "data" / "{site}"),
        "--bundle-overrides", json.dumps({"batch_size": 2}, separators=(",", ":")),
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / "ws"),
    ]  # fmt: skip
    # Execute
    done = run_bounded(command, timeout=900)
    # Assert: nonzero exit, and the summary names the site and why
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    missing = tmp_path / "data" / "site-2"
    assert f"site-2: failed at start: --dataset-dir '{missing}' does not exist on this site." in out, out[-3000:]
    assert "site-1: ok" in out
    final = json.loads((tmp_path / "state" / "server" / "final_metrics.json").read_text())
    assert sorted(final["metrics"]) == ["site-1"] and sorted(final["site_errors"]) == ["site-2"]
    history = json.loads((tmp_path / "state" / "server" / "server_state.json").read_text())["history"]
    assert "does not exist" in history[0]["rejected"]["site-2"] and sorted(history[0]["accepted"]) == ["site-1"]
