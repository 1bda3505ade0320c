"""The convergence references: early stopping on the validation split, the best epoch's weights kept."""

from __future__ import annotations

import pytest

from omnifm_monai.jobs import federation_for, parse_job_args
from omnifm_monai.jobs.references import train_bundle


def test_early_stopping_stops_patience_epochs_after_the_best(tmp_path):
    # Prepare: one small phantom site
    settings, _ = parse_job_args(["--clients", "1", "--samples-per-client", "20", "--image-size", "32",
                                  "--bundle-overrides", '{"batch_size":8}'])  # fmt: skip
    path = str(tmp_path / "site.npz")
    federation_for(settings).client("site-1").save_npz(path)
    # Execute
    workflow, record = train_bundle(path, settings, str(tmp_path), num_classes=6, max_epochs=8, patience=2)
    # Assert: it ran until 2 epochs passed without a better validation score, or to the cap
    assert 1 <= record["best_epoch"] <= record["epochs"] <= 8
    assert record["epochs"] == min(8, record["best_epoch"] + 2)
    assert 0.0 <= record["best_val"] <= 1.0
    with pytest.raises(ValueError, match="max_epochs=0"):
        train_bundle(path, settings, str(tmp_path), num_classes=6, max_epochs=0)
