"""Super-resolution image quality: PSNR and SSIM of a prediction against the high-resolution target."""

from __future__ import annotations

import torch
from monai.metrics import PSNRMetric, SSIMMetric

__all__ = ["MAX_PSNR", "image_quality"]

MAX_PSNR = 100.0
"""Cap of a single image's PSNR (dB): an exact prediction would otherwise score infinity."""


def image_quality(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR and SSIM (data range 1) of prediction vs target, both (N, C, *S); the prediction is clipped.

    Each image's PSNR is capped at :data:`MAX_PSNR` dB so a perfect prediction scores finitely.
    """
    spatial_dims = target.ndim - 2
    prediction = prediction.float().clamp(0.0, 1.0)
    target = target.float()
    psnr = PSNRMetric(max_val=1.0)(prediction, target).clamp(max=MAX_PSNR)  # (N, 1)
    ssim = SSIMMetric(spatial_dims=spatial_dims, data_range=1.0)(prediction, target)  # (N, 1)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}
