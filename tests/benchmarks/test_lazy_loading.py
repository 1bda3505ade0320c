"""Smoke test of the lazy-loading benchmark script at a tiny size (its figures come from running it, not here)."""

import json

BENCHMARK = "lazy_loading"  # the script under test (conftest.py loads it as `script`)


def test_measures_every_mode_and_writes_the_report(script, tmp_path):
    # Execute: 12 training files, in this process (a child process per mode is what the real run uses)
    out = tmp_path / "lazy_loading.json"
    args = ["--images", "12", "--file-size", "16", "--image-size", "16", "--batch-size", "4", "--in-process"]
    script.main([*args, "--data-dir", str(tmp_path / "site"), "--out", str(out)])
    # Assert
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["rows"]] == list(script.MODES)
    for row in report["rows"]:
        assert row["images"] == 12 and row["images_per_epoch"] == 12 and row["batch_shape"] == [4, 3, 16, 16]
        assert 0 < row["startup_s"] <= row["epoch_s"] and row["peak_rss_mib"] > 0
    assert "| disk_warm |" in out.with_suffix(".md").read_text()
    assert not (tmp_path / "site").exists()  # the files are removed unless --keep-data
