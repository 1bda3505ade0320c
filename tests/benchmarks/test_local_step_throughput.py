"""Smoke test of the local-step benchmark script (its figures are measured by running it, not here)."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "local_step_throughput.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("local_step_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writes_one_row_per_task_and_device_with_the_ratio(tmp_path):
    # Execute: CPU only, tiny; cuda is asked for and skipped when absent
    script = _load_script()
    args = ["--tasks", "classification", "--devices", "cpu", "--batch-size", "4", "--image-size", "32"]
    script.main([*args, "--steps", "2", "--warmup", "0", "--out", str(tmp_path)])
    # Assert
    report = json.loads((tmp_path / "results.json").read_text())
    (row,) = report["rows"]
    assert row["task"] == "classification" and row["device"] == "cpu" and row["input_shape"] == [4, 3, 32, 32]
    assert row["omnifm_over_plain"] > 0 and row["omnifm_parameters"] > row["plain_parameters"]
    assert "| classification | cpu |" in (tmp_path / "results.md").read_text()
