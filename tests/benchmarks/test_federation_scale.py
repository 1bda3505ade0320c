"""The scale benchmark's memory sampling and table (the simulations themselves are run by the script)."""

import os

import psutil

BENCHMARK = "federation_scale"  # the script under test (conftest.py loads it as `script`)


def test_tree_memory_and_table(script):
    total, largest = script.tree_rss(psutil.Process(os.getpid()))
    assert total >= largest > 10 * 2**20  # this test process alone holds torch
    report = {
        "settings": {"strategy": "omnifm", "rounds": 2, "participation": 0.2, "threads": 4,
                     "samples_per_client": 30, "image_size": 32},
        "cpu_count": 2, "date": "today",
        "runs": [{"clients": 16, "completed": True, "wall_seconds": 220.0, "wall_seconds_per_round": 110.0,
                  "participants_per_round": 3, "peak_rss_total_mib": 4000.0, "peak_rss_largest_mib": 900.0,
                  "restricted_accuracy": 0.5},
                 {"clients": 64, "completed": False, "wall_seconds": 10.0, "peak_rss_total_mib": 1.0,
                  "peak_rss_largest_mib": 1.0}],
    }  # fmt: skip
    table = script.to_markdown(report)
    assert "| 16 | yes | 220 | 110 | 3 | 4000 | 900 | 50.0 |" in table
    assert "| 64 | NO | 10 | nan | - | 1 | 1 | - |" in table
