"""SuperResolutionTask: PSNR/SSIM of a perfect vs a noisy network on a site's test split, bicubic floor keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from omnifm_monai.metrics import image_quality
from omnifm_monai.networks.omnifm_super_resolution import bicubic_upsample
from omnifm_monai.tasks import get_task
from omnifm_monai.tasks.super_resolution import SuperResolutionTask

SETTINGS = {"image_size": 16, "in_channels": 3, "scale": 2, "seed": 0, "num_samples": 20}


class _Oracle(torch.nn.Module):
    """Returns the HR image of each LR input it was given (looked up by content), plus optional noise."""

    def __init__(self, items: list[dict], noise: float = 0.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # predict_in_batches reads the device from it
        self.pairs = [(torch.as_tensor(d["image"]), torch.as_tensor(d["label"])) for d in items]
        self.noise = noise

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = []
        for x in lr:
            hr = next(h for lo, h in self.pairs if torch.equal(lo, x))
            out.append(hr + self.noise * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0)))
        return torch.stack(out)


def test_task_attributes_and_registry():
    task = get_task("super_resolution")
    assert isinstance(task, SuperResolutionTask)
    assert (task.name, task.bundle, task.headline_metric) == ("super_resolution", "omnifm_super_resolution", "psnr")
    assert task.report_metrics == ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
    assert task.uses_num_classes is False and task.centroid_groups([{}]) is None


def test_federation_through_the_task():
    fed = SuperResolutionTask().build_federation(
        "cross_modality_hard", 2, seed=0, data_dir="", image_size=16, samples_per_client=10
    )
    assert fed.num_classes == 0 and [c.name for c in fed.clients] == ["site-1", "site-2"]


def test_evaluator_scores_perfect_noisy_and_bicubic(tmp_path):
    from omnifm_monai.data.super_resolution import load_super_resolution_split

    parser = ConfigParser(dict(SETTINGS))
    evaluate = SuperResolutionTask().test_evaluator("phantom", parser)
    items = load_super_resolution_split("phantom", "test", **{k: v for k, v in SETTINGS.items()})

    perfect, noisy = evaluate(_Oracle(items)), evaluate(_Oracle(items, noise=0.05))
    for scores in (perfect, noisy):
        assert set(scores) >= {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())
    assert perfect["psnr"] >= 80.0 and perfect["ssim"] == pytest.approx(1.0, abs=1e-4)  # capped at MAX_PSNR, not inf
    assert noisy["psnr"] == pytest.approx(26.0, abs=1.5)  # 20 log10(1 / 0.05), a little more after clipping
    assert noisy["ssim"] < perfect["ssim"]
    assert perfect["bicubic_psnr"] == noisy["bicubic_psnr"] < perfect["psnr"]

    lr = torch.as_tensor(np.stack([d["image"] for d in items]))
    hr = torch.as_tensor(np.stack([d["label"] for d in items]))
    expected = image_quality(bicubic_upsample(lr, 2), hr)
    assert perfect["bicubic_psnr"] == pytest.approx(expected["psnr"])
    assert perfect["bicubic_ssim"] == pytest.approx(expected["ssim"])


def test_real_network_scores_are_finite():
    from omnifm_monai.networks import OmniFMSuperResolution

    evaluate = SuperResolutionTask().test_evaluator("", ConfigParser(dict(SETTINGS)))
    net = OmniFMSuperResolution(
        scale=2, features=8, num_res_units=1, spectral_options={"token_dim": 16, "num_heads": 2}
    )
    scores = evaluate(net)
    assert all(math.isfinite(v) for v in scores.values())
    assert abs(scores["psnr"] - scores["bicubic_psnr"]) < 1.0  # untrained: about the bicubic image
