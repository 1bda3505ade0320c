"""Super-resolution in the federated pipeline: the phantom SR federation and per-site PSNR / SSIM vs bicubic."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.metrics.super_resolution import image_quality
from omnifm_monai.networks.omnifm_super_resolution import bicubic_upsample
from omnifm_monai.tasks.base import FederatedTask
from omnifm_monai.tasks.classification import predict_in_batches, stack_images

__all__ = ["SuperResolutionTask"]


class SuperResolutionTask(FederatedTask):
    """Single-image super-resolution (``bundles/omnifm_super_resolution``); PSNR and SSIM vs HR."""

    name = "super_resolution"
    bundle = "omnifm_super_resolution"
    headline_metric = "psnr"
    report_metrics = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
    uses_num_classes = False

    @staticmethod
    def federation_builder():
        from omnifm_monai.data.federation import build_super_resolution_federation

        return build_super_resolution_federation

    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """PSNR/SSIM of the clipped network output and of bicubic interpolation on the site's test split.

        The bicubic scores are computed once: they are the floor every model must beat.
        """
        from omnifm_monai.data.super_resolution import load_super_resolution_split

        image_size, in_channels, scale, seed = (
            parser.get_parsed_content(k) for k in ("image_size", "in_channels", "scale", "seed")
        )
        extra = {"num_samples": parser.get_parsed_content("num_samples")} if "num_samples" in parser else {}
        items = load_super_resolution_split(
            dataset_dir, split, image_size=image_size, in_channels=in_channels, scale=scale, seed=seed, **extra
        )
        lr = stack_images(items)  # (N, C, S / scale, S / scale), stacked once and reused every round
        hr = torch.as_tensor(torch.stack([torch.as_tensor(d["label"]) for d in items]))  # (N, C, S, S)
        floor = image_quality(bicubic_upsample(lr, scale), hr)
        baseline = {f"bicubic_{k}": v for k, v in floor.items()}

        def evaluate(network: nn.Module) -> dict[str, float]:
            sr = predict_in_batches(network, lr, batch_size=32)  # (N, C, S, S)
            return {**image_quality(sr, hr), **baseline}

        return evaluate
