"""The NVFlare overhead benchmark: its plain loop, ratios and table (the simulator runs are the script's)."""

import pytest

BENCHMARK = "nvflare_overhead"  # the script under test (conftest.py loads it as `script`)


def test_steady_round_seconds_skips_the_first_round(script):
    history = [{"closed_at": 100.0}, {"closed_at": 103.0}, {"closed_at": 107.5}, {"round": 3}]
    assert script.steady_round_seconds(history) == [3.0, 4.5]
    assert script.steady_round_seconds([{"closed_at": 1.0}]) == []


def test_ratios_and_table(script):
    runs = [
        {"mode": "plain", "threads": 1, "completed": True, "wall_seconds": 50.0, "round_seconds": [4.0, 6.0, 5.0],
         "peak_rss_largest_mib": 700.0, "metric": "restricted_accuracy", "final_mean": 0.5},
        {"mode": "nvflare", "threads": 8, "completed": False, "wall_seconds": 100.0, "round_seconds": [6.0, 6.0],
         "peak_rss_largest_mib": 500.0, "metric": "restricted_accuracy", "final_mean": None},
    ]  # fmt: skip
    rows = script.summarise(runs)
    assert rows[0]["round_ratio"] == 1.0
    assert rows[1]["round_ratio"] == pytest.approx(1.2) and rows[1]["wall_ratio"] == pytest.approx(2.0)
    report = {"settings": {"strategy": "omnifm", "clients": 8, "rounds": 4, "participation": 1.0,
                           "samples_per_client": 240, "image_size": 32, "forwarded": []},
              "cpu_count": 2, "date": "today", "rows": rows}  # fmt: skip
    table = script.to_markdown(report)
    assert "| plain loop, one process | yes | 50 | 5.0 | 1.00 | 1.00 | 700 | restricted_accuracy 0.500 |" in table
    assert "| NVFlare simulator, 8 threads | NO | 100 | 6.0 | 1.20 | 2.00 | 500 | - |" in table


def test_plain_loop_runs_every_round_through_the_client_and_server_classes(script, tmp_path):
    args, forwarded = script.parse_args(
        ["--clients", "2", "--rounds", "2", "--samples-per-client", "20", "--image-size", "16",
         "--out", str(tmp_path), "--strategy", "omnifm"]
    )  # fmt: skip
    result = script.plain_loop(args, forwarded)
    assert result["completed"] and len(result["round_seconds"]) == 1 and result["round_seconds"][0] > 0
    assert result["metric"] == "restricted_accuracy" and 0.0 <= result["final_mean"] <= 1.0
    # each site trained and kept its private state where the NVFlare client keeps it
    assert sorted(p.name for p in (tmp_path / "plain" / "state").glob("site-*/private_omnifm.pt")) == [
        "private_omnifm.pt", "private_omnifm.pt"
    ]  # fmt: skip
