import json

import pytest

from omnifm_monai.reporting import comparison_rows, load_run, markdown_table, metric_label, write_report


def _fake_run(root, strategy, accuracies, final):
    server = root / strategy / "state" / "server"
    server.mkdir(parents=True)
    history = [
        {
            "round": r,
            "metrics": {"site-1": {"restricted_accuracy": a}, "site-2": {"restricted_accuracy": a + 0.1}},
            "accepted": {"site-1": {"model_bytes": 1000, "spectral_bytes": 256}},
        }
        for r, a in enumerate(accuracies)
    ]
    (server / "server_state.json").write_text(json.dumps({"strategy": strategy, "history": history}))
    metrics = {
        site: {"restricted_accuracy": acc, "restricted_macro_f1": acc, "accuracy": acc / 2, "macro_f1": acc / 2,
               "majority_rate": 0.5}
        for site, acc in final.items()
    }  # fmt: skip
    (server / "final_metrics.json").write_text(json.dumps({"metrics": metrics}))
    return str(root / strategy / "state")


def test_rows_table_and_files(tmp_path):
    # Prepare
    local = load_run(_fake_run(tmp_path, "local", [0.3, 0.5], {"site-1": 0.6, "site-2": 0.8}), wall_seconds=12)
    omni = load_run(_fake_run(tmp_path, "omnifm", [0.4, 0.6], {"site-1": 0.7, "site-2": 0.9}), wall_seconds=20)
    # Execute
    rows = comparison_rows([local, omni])
    paths = write_report([local, omni], str(tmp_path / "report"), "title")
    # Assert
    assert rows[0]["mean_restricted_accuracy"] == pytest.approx(0.7)
    assert rows[1]["mean_accuracy"] == pytest.approx(0.4)
    assert rows[1]["last5_restricted_accuracy"] == pytest.approx((0.45 + 0.65) / 2)
    assert rows[1]["upload_bytes_per_site_round"] == {"model": 1000.0, "spectral": 256.0}
    table = markdown_table(rows)
    assert "| local | 70.0 |" in table and "| omnifm | 80.0 |" in table and "Majority-class rate" in table
    assert all((tmp_path / "report" / name).is_file() for name in ("results.json", "report.md", "convergence.png"))
    assert paths["markdown"].endswith("report.md")


def test_unfinished_run_is_reported(tmp_path):
    (tmp_path / "state" / "server").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="did not finish"):
        load_run(str(tmp_path / "state"))


def test_task_metrics_in_their_units(tmp_path):
    # Prepare: a super-resolution-like run, PSNR in dB and SSIM in [0, 1]
    server = tmp_path / "sr" / "state" / "server"
    server.mkdir(parents=True)
    history = [{"round": 0, "metrics": {"site-1": {"psnr": 30.0}}, "accepted": {}}]
    (server / "server_state.json").write_text(json.dumps({"strategy": "omnifm", "history": history}))
    final = {"site-1": {"psnr": 31.25, "ssim": 0.9}, "site-2": {"psnr": 29.25, "ssim": 0.8}}
    (server / "final_metrics.json").write_text(json.dumps({"metrics": final}))
    run = load_run(str(tmp_path / "sr" / "state"), wall_seconds=3)
    # Execute
    rows = comparison_rows([run], ("psnr", "ssim"))
    table = markdown_table(rows, ("psnr", "ssim"))
    write_report([run], str(tmp_path / "report"), "sr", metrics=("psnr", "ssim"))
    # Assert: no majority-class line without that metric; PSNR not turned into %
    assert rows[0]["mean_psnr"] == pytest.approx(30.25) and rows[0]["per_site_psnr"]["site-2"] == 29.25
    assert "| omnifm | 30.25 | 85.0 | 30.00 | 31.25 | 29.25 |" in table
    assert "PSNR dB" in table and "Majority" not in table
    assert (tmp_path / "report" / "convergence.png").is_file()


def test_units_follow_the_metric_not_its_baseline_prefix():
    from omnifm_monai.reporting import format_metric

    assert format_metric("mi", 5.123) == "5.12" and format_metric("max_mi", 5.123) == "5.12"
    assert format_metric("bicubic_psnr", 28.321) == "28.32" and format_metric("average_qabf", 0.5) == "50.0"
    assert format_metric("macro_f1", 0.5) == "50.0" and format_metric("dice", float("nan")) == "n/a"


def test_metric_label_names_the_all_label_accuracy_only_beside_the_own_label_one():
    assert metric_label("accuracy", ("restricted_accuracy", "accuracy")) == "acc (all labels)"
    assert metric_label("accuracy", ("accuracy", "closed_accuracy", "open_accuracy")) == "accuracy"  # VQA
    assert metric_label("hd95") == "HD95" and metric_label("unknown_metric") == "unknown_metric"
