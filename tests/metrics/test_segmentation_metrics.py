"""Dice / HD95 on hand-made predictions: MONAI's HD95 with the finite conventions, spacing in mm."""

from __future__ import annotations

import math

import pytest
import torch

from omnifm_monai.metrics import HausdorffDistance95, hausdorff_distance_95, segmentation_metrics

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


def test_hd95_is_in_mm_with_the_spacing():
    # Prepare: the same two squares 5 columns apart; columns 2 mm wide, rows 0.5 mm
    a, b = torch.zeros(20, 20, dtype=torch.bool), torch.zeros(20, 20, dtype=torch.bool)
    a[2:6, 2:6], b[2:6, 7:11] = True, True
    # Execute / Assert: 5 columns of 2 mm
    assert hausdorff_distance_95(a, b, spacing=(0.5, 2.0)) == pytest.approx(10.0)
    y = torch.nn.functional.one_hot(_labels(), 3).permute(0, 3, 1, 2)  # (2, 3, 32, 32)
    missed = y.clone()
    missed[:, 1:] = 0  # nothing predicted: every present class scores the diagonal, in mm
    metric = HausdorffDistance95(spacing=(0.5, 2.0), reduction="none")
    distances = metric(missed, y)  # (2, 2)
    diagonal = math.sqrt((32 * 0.5) ** 2 + (32 * 2.0) ** 2)
    assert distances[0].tolist() == pytest.approx([diagonal, diagonal])
    assert distances[1, 0].item() == pytest.approx(diagonal) and math.isnan(distances[1, 1].item())
    assert segmentation_metrics(missed.argmax(dim=1), _labels(), NAMES, spacing=(0.5, 2.0))["hd95"] == pytest.approx(
        diagonal
    )
