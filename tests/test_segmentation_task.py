"""SegmentationTask: Dice / HD95 on hand-made predictions, the evaluator on a site file, the federation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from omnifm_monai.data.phantom import TISSUES
from omnifm_monai.tasks.segmentation import (
    HausdorffDistance95,
    SegmentationTask,
    hausdorff_distance_95,
    segmentation_metrics,
)

NAMES = ("background", "organ", "tumour")


def _labels() -> torch.Tensor:
    """(2, 32, 32): an 8x8 organ in both images, a tumour in the first one only."""
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 4:12, 4:12] = 1
    y[0, 20:28, 20:28] = 2
    return y


def _all_finite(metrics: dict) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_perfect_prediction():
    metrics = segmentation_metrics(_labels(), _labels(), NAMES)
    assert metrics == {"dice_organ": 1.0, "dice_tumour": 1.0, "dice": 1.0, "hd95": 0.0, "pixel_accuracy": 1.0}


def test_shifted_and_missed_prediction():
    # Prepare: the organ moved down by 12 rows, the tumour missed
    pred = torch.zeros(2, 32, 32, dtype=torch.long)
    pred[:, 16:24, 4:12] = 1
    # Execute
    metrics = segmentation_metrics(pred, _labels()[:, None], NAMES)  # (N, 1, *S) labels too
    # Assert: no overlap; HD95 = mean(12, 12, diagonal of 32 x 32) over the (image, present class) pairs
    assert metrics["dice"] == metrics["dice_organ"] == metrics["dice_tumour"] == 0.0
    assert metrics["hd95"] == pytest.approx((12 + 12 + math.sqrt(2 * 32**2)) / 3, abs=1e-4)
    assert metrics["pixel_accuracy"] == pytest.approx(1 - (64 + 64 + 64 + 64 + 64) / (2 * 32 * 32))
    assert _all_finite(metrics)


def test_empty_ground_truth_stays_finite():
    empty = torch.zeros(2, 32, 32, dtype=torch.long)
    assert segmentation_metrics(empty, empty, NAMES) == {"dice": 1.0, "hd95": 0.0, "pixel_accuracy": 1.0}
    metrics = segmentation_metrics(_labels(), empty, NAMES)
    assert metrics["dice"] == 0.0 and metrics["hd95"] == pytest.approx(math.sqrt(2 * 32**2)) and _all_finite(metrics)


def test_hausdorff_distance_95_of_two_squares():
    a, b = torch.zeros(20, 20, dtype=torch.bool), torch.zeros(20, 20, dtype=torch.bool)
    a[2:6, 2:6], b[2:6, 7:11] = True, True
    assert hausdorff_distance_95(a, b) == pytest.approx(5.0)
    assert math.isnan(hausdorff_distance_95(a, torch.zeros_like(b)))
    assert hausdorff_distance_95(torch.zeros_like(a), b) == math.inf


def test_hd95_metric_reduction_ignores_absent_classes():
    y = torch.nn.functional.one_hot(_labels(), 3).permute(0, 3, 1, 2)  # (2, 3, 32, 32)
    metric = HausdorffDistance95()
    metric(y, y)
    assert metric.aggregate().item() == 0.0


def test_task_attributes_and_evaluator(tmp_path):
    task = SegmentationTask()
    assert (task.name, task.bundle, task.headline_metric, task.uses_num_classes) == (
        "segmentation",
        "omnifm_segmentation",
        "dice",
        True,
    )
    assert task.headline_metric in task.report_metrics and "hd95" in task.report_metrics
    assert task.centroid_groups([{"image": np.zeros((1, 4, 4))}]) is None
    fed = task.build_federation("cross_modality_hard", 2, seed=0, data_dir=None, image_size=32, samples_per_client=10)
    assert fed.num_classes == len(TISSUES)
    fed.client("site-2").save_npz(tmp_path / "site.npz")
    parser = ConfigParser(
        {"image_size": 32, "in_channels": 1, "spatial_dims": 2, "num_samples": 10, "seed": 0, "num_classes": 7}
    )
    evaluate = task.test_evaluator(str(tmp_path / "site.npz"), parser)

    class Oracle(torch.nn.Module):  # predicts the site's own test masks (the evaluator keeps the order)
        def __init__(self, masks):
            super().__init__()
            self.masks, self.weight, self.calls = masks, torch.nn.Parameter(torch.zeros(1)), 0

        def forward(self, x):
            out = torch.nn.functional.one_hot(self.masks[self.calls : self.calls + len(x)], 7).permute(0, 3, 1, 2)
            self.calls += len(x)
            return out.float()

    masks = torch.as_tensor(fed.client("site-2").splits["test"][1]).long()
    perfect = evaluate(Oracle(masks))
    assert perfect["dice"] == 1.0 and perfect["hd95"] == 0.0 and _all_finite(perfect)
    assert {f"dice_{n}" for n in TISSUES[1:6]} <= set(perfect)
    wrong = evaluate(Oracle(torch.zeros_like(masks)))
    assert wrong["dice"] == 0.0 and wrong["hd95"] > 0 and _all_finite(wrong)
