"""The one HR -> LR degradation model: the super-resolution task's input, for real and phantom images alike.

:func:`degrade_bicubic`:

1. Gaussian blur of ``blur_sigma`` HR pixels (default ``0.5 * scale``), reflect-padded, separable;
2. downsampling by ``scale``: PyTorch's anti-aliased ``F.interpolate(mode="bicubic", antialias=True)``
   (``downsample="bicubic"``, the super-resolution pipeline) or area (box) averaging (``downsample="area"``,
   :func:`omnifm_monai.data.phantom.degrade`); 3D volumes always use area averaging (PyTorch has no 3D
   anti-aliased bicubic);
3. additive Gaussian noise of ``noise_std`` (default 0.01) from ``numpy.random.default_rng(seed)``;
4. clip to [0, 1], float32.

Same images, scale and seed give the same LR images, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DOWNSAMPLE_MODES", "degrade_bicubic"]

DOWNSAMPLE_MODES: tuple[str, ...] = ("bicubic", "area")
"""How :func:`degrade_bicubic` downsamples 2D images."""


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()  # (2 * radius + 1,)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of x (N, C, *S), reflect padding (replicate where an axis is too short)."""
    if sigma <= 0:
        return x
    kernel = _gaussian_kernel(sigma)
    radius = kernel.numel() // 2
    n, c, *spatial = x.shape
    out = x.reshape(n * c, 1, *spatial)  # every (image, channel) as one channel
    for axis in range(len(spatial)):
        shape = [1, 1] + [1] * len(spatial)
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * len(spatial)
        pad[2 * (len(spatial) - 1 - axis)] = pad[2 * (len(spatial) - 1 - axis) + 1] = radius
        mode = "reflect" if min(spatial) > radius else "replicate"
        padded = F.pad(out, pad, mode=mode)
        conv = F.conv2d if len(spatial) == 2 else F.conv3d
        out = conv(padded, kernel.reshape(shape))
    return out.reshape(n, c, *spatial)


def degrade_bicubic(
    images: np.ndarray | torch.Tensor,
    scale: int,
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
    noise_std: float = 0.01,
    downsample: str = "bicubic",
) -> np.ndarray:
    """LR images from HR images: Gaussian blur, bicubic (anti-aliased) or area downsampling, noise, clip.

    Args:
        images: float HR images (N, C, H, W) or (N, C, D, H, W) in [0, 1]; every spatial size divisible by
            ``scale``.
        scale: integer downsampling factor (>= 1).
        seed: seed of the noise (any non-negative int or sequence numpy accepts).
        blur_sigma: Gaussian sigma in HR pixels (>= 0); ``None`` for ``0.5 * scale``.
        noise_std: standard deviation of the noise (>= 0).
        downsample: 2D images: ``"bicubic"`` (anti-aliased) or ``"area"`` (box average); volumes: area.

    Returns:
        float32 (N, C, *S // scale) in [0, 1].

    Raises:
        ValueError: for a bad shape or argument (the message names it).
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim not in (4, 5):
        raise ValueError(f"images.shape={tuple(x.shape)} must be (N, C, H, W) or (N, C, D, H, W).")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale={scale!r} must be an integer >= 1.")
    scale = int(scale)
    if any(s % scale for s in x.shape[2:]):
        raise ValueError(f"scale={scale} must divide every spatial size of images.shape={tuple(x.shape)}.")
    sigma = 0.5 * scale if blur_sigma is None else float(blur_sigma)
    if not sigma >= 0:
        raise ValueError(f"blur_sigma={blur_sigma!r} must be >= 0.")
    if not float(noise_std) >= 0:
        raise ValueError(f"noise_std={noise_std!r} must be >= 0.")
    if downsample not in DOWNSAMPLE_MODES:
        raise ValueError(f"downsample={downsample!r} is not supported; expected one of {DOWNSAMPLE_MODES}.")
    size = [s // scale for s in x.shape[2:]]
    with torch.no_grad():
        blurred = _blur(x, sigma)  # (N, C, *S)
        if scale == 1:
            low = blurred
        elif x.ndim == 4 and downsample == "bicubic":
            low = F.interpolate(blurred, size=size, mode="bicubic", antialias=True, align_corners=False)
        else:
            low = F.interpolate(blurred, size=size, mode="area")  # (N, C, *S / scale)
    out = low.numpy()
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
