"""SegmentationTask: the evaluator on a site file (an oracle and an all-background network), the federation."""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.bundle import ConfigParser

from omnifm_monai.data.phantom import TISSUES
from omnifm_monai.tasks.segmentation import SegmentationTask


def _all_finite(metrics: dict) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


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
