"""Smoke test of the local-step benchmark script (its figures are measured by running it, not here)."""

import json

BENCHMARK = "local_step_throughput"  # the script under test (conftest.py loads it as `script`)


def test_writes_one_row_per_task_and_device_with_the_ratio(script, tmp_path):
    # Execute: CPU only, tiny; cuda is asked for and skipped when absent
    args = ["--tasks", "classification", "--devices", "cpu", "--batch-size", "4", "--image-size", "32"]
    script.main([*args, "--steps", "2", "--warmup", "0", "--out", str(tmp_path)])
    # Assert
    report = json.loads((tmp_path / "results.json").read_text())
    (row,) = report["rows"]
    assert row["task"] == "classification" and row["device"] == "cpu" and row["input_shape"] == [4, 3, 32, 32]
    assert row["omnifm_over_plain"] > 0 and row["omnifm_parameters"] > row["plain_parameters"]
    assert "| classification | cpu |" in (tmp_path / "results.md").read_text()
