"""FusionTask: the adapter's attributes, federation and test metrics (network and baselines)."""

from __future__ import annotations

import math

import pytest
from monai.bundle import ConfigParser

from omnifm_monai.networks import OmniFMFusion
from omnifm_monai.tasks import get_task
from omnifm_monai.tasks.fusion import FusionTask


def test_registered_and_described():
    task = get_task("fusion")
    assert isinstance(task, FusionTask)
    assert (task.name, task.bundle, task.headline_metric, task.uses_num_classes) == (
        "fusion",
        "omnifm_fusion",
        "qabf",
        False,
    )
    assert task.headline_metric in task.report_metrics
    assert task.centroid_groups([{"image": None}]) is None


def test_federation_and_test_evaluator(tmp_path):
    task = FusionTask()
    fed = task.build_federation("cross_modality_hard", 2, seed=0, data_dir="", image_size=16, samples_per_client=10)
    assert fed.num_classes == 0 and [c.name for c in fed.clients] == ["site-1", "site-2"]
    fed.client("site-2").save_npz(tmp_path / "site.npz")
    parser = ConfigParser({"image_size": 16, "num_samples": 20, "seed": 0})
    evaluate = task.test_evaluator(str(tmp_path / "site.npz"), parser)
    net = OmniFMFusion(features=(4, 8), spectral_options={"token_dim": 16, "num_heads": 2})
    scores = evaluate(net)
    expected = {"qabf", "ssim", "vif", "mi", "entropy"}
    assert set(scores) == expected | {f"{b}_{m}" for b in ("average", "max") for m in expected}
    assert set(task.report_metrics) <= set(scores)
    assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())
    assert 0.0 <= scores["qabf"] <= 1.0 and scores["max_qabf"] > scores["average_qabf"] > 0.0
    again = task.test_evaluator("", parser)(net)  # the phantom works too
    assert math.isfinite(again["qabf"])


def test_unknown_scenario():
    with pytest.raises(ValueError, match="scenario"):
        FusionTask().build_federation("dirichlet", 2, seed=0, data_dir=None, image_size=16, samples_per_client=None)
