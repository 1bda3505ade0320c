"""Image-fusion quality metrics of the fusion literature, for gray images in [0, 1].

Every metric takes batched images ``(B, 1, *S)`` (numpy or torch; a single 2D image ``(H, W)`` is
also accepted) and returns one float64 value per sample, a tensor ``(B,)``. ``F`` is the fused image,
``A`` and ``B`` the two sources.

- :func:`entropy` (EN): Shannon entropy in bits of the 256-level histogram (``round(255 x)``).
- :func:`mutual_information` (MI): ``MI(F, A) + MI(F, B)``, each ``H(F) + H(X) - H(F, X)`` from the
  256 x 256 joint histogram, in bits.
- :func:`ssim` / :func:`fusion_ssim`: MONAI's SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
  data range 1); the fusion score is ``(SSIM(F, A) + SSIM(F, B)) / 2``.
- :func:`qabf`: Xydeas-Petrovic edge preservation ``Q^{AB/F}`` (2D), Sobel gradients; constants of
  the original paper (see :data:`QABF_CONSTANTS`).
- :func:`vif` / :func:`fusion_vif`: pixel-domain, multi-scale VIF of Sheikh & Bovik (4 scales, Gaussian
  windows of 17, 9, 5 and 3 pixels, sigma N/5, noise variance 2 on the 0-255 scale); the fusion score is
  the *average* ``(VIF(A, F) + VIF(B, F)) / 2`` (so fusing an image with itself gives 1).

:func:`fusion_metrics` gives all five as floats; :class:`~omnifm_monai.metrics.engine.QabfMetric` is Qabf
as an ignite metric for a bundle's evaluator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics.regression import compute_ssim_and_cs

__all__ = [
    "QABF_CONSTANTS",
    "entropy",
    "mutual_information",
    "ssim",
    "fusion_ssim",
    "qabf",
    "vif",
    "fusion_vif",
    "fusion_metrics",
    "baseline_fusion",
]

QABF_CONSTANTS: dict[str, float] = {
    "gamma_g": 0.9994,
    "kappa_g": -15.0,
    "sigma_g": 0.5,
    "gamma_a": 0.9879,
    "kappa_a": -22.0,
    "sigma_a": 0.8,
    "L": 1.0,
}
"""Xydeas & Petrovic (Electronics Letters 36(4), 2000): sigmoids ``Q_g = gamma_g / (1 + exp(kappa_g (G -
sigma_g)))`` and ``Q_a`` alike on the gradient-strength ratio G and the orientation agreement A; weights
``w = g^L``. With these constants a perfectly preserved edge scores ``Q_g(1) Q_a(1) = 0.9748``, the
metric's practical maximum."""

_LEVELS = 256
_EPS = 1e-10


def _batch(x) -> torch.Tensor:
    """numpy/torch (B, 1, *S) or (H, W) -> float64 tensor (B, 1, *S)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to(torch.float64)
    if t.ndim == 2:
        t = t[None, None]  # (H, W) -> (1, 1, H, W)
    if t.ndim not in (4, 5) or t.shape[1] != 1:
        raise ValueError(f"expected gray images (B, 1, *S) or one (H, W) image, got shape {tuple(t.shape)}.")
    return t.cpu()


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _batch(x), _batch(y)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return a, b


def _levels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, *S) in [0, 1] -> (B, N) integer gray levels 0..255."""
    return torch.round(x.clamp(0.0, 1.0) * (_LEVELS - 1)).long().flatten(1)


def _entropy_of_counts(counts: torch.Tensor) -> torch.Tensor:
    """counts (B, K) -> Shannon entropy in bits (B,)."""
    p = counts.to(torch.float64) / counts.sum(dim=1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-300))).sum(dim=1)


def entropy(image) -> torch.Tensor:
    """EN: entropy in bits of each image's 256-bin histogram, (B, 1, *S) -> (B,)."""
    q = _levels(_batch(image))  # (B, N)
    offsets = torch.arange(q.shape[0])[:, None] * _LEVELS
    counts = torch.bincount((q + offsets).flatten(), minlength=q.shape[0] * _LEVELS)
    return _entropy_of_counts(counts.reshape(q.shape[0], _LEVELS))


def _mi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MI(x, y) in bits from the 256 x 256 joint histogram, per sample (B,)."""
    qx, qy = _levels(x), _levels(y)  # (B, N)
    out = []
    for a, b in zip(qx, qy):  # one joint histogram (65536 bins) at a time keeps memory small
        joint = torch.bincount(a * _LEVELS + b, minlength=_LEVELS * _LEVELS).reshape(_LEVELS, _LEVELS)
        h_joint = _entropy_of_counts(joint.flatten()[None])
        h_a = _entropy_of_counts(joint.sum(dim=1)[None])
        h_b = _entropy_of_counts(joint.sum(dim=0)[None])
        out.append(h_a + h_b - h_joint)
    return torch.cat(out)


def mutual_information(fused, source_a, source_b=None) -> torch.Tensor:
    """MI = MI(F, A) + MI(F, B) in bits, (B,); with ``source_b=None`` only MI(F, A)."""
    f, a = _pair(fused, source_a)
    total = _mi(f, a)
    if source_b is not None:
        total = total + _mi(*_pair(fused, source_b))
    return total


def ssim(x, y) -> torch.Tensor:
    """SSIM(x, y) (MONAI, Gaussian window 11, sigma 1.5, data range 1), mean over pixels, (B,)."""
    a, b = _pair(x, y)
    spatial_dims = a.ndim - 2
    value, _ = compute_ssim_and_cs(
        a, b, spatial_dims, kernel_size=[11] * spatial_dims, kernel_sigma=[1.5] * spatial_dims, data_range=1.0
    )  # (B, 1, *S') map
    return value.flatten(1).mean(dim=1)


def fusion_ssim(fused, source_a, source_b) -> torch.Tensor:
    """``(SSIM(F, A) + SSIM(F, B)) / 2``, (B,)."""
    return 0.5 * (ssim(fused, source_a) + ssim(fused, source_b))


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)


def _sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) -> gradient strength g and orientation alpha in (-pi/2, pi/2], both (B, 1, H-2, W-2)."""
    gx = F.conv2d(x, _SOBEL_X[None, None])  # valid: interior pixels only
    gy = F.conv2d(x, _SOBEL_X.T.contiguous()[None, None])
    strength = torch.sqrt(gx**2 + gy**2)
    alpha = torch.atan2(gy, gx)  # (-pi, pi]
    alpha = torch.where(alpha > math.pi / 2, alpha - math.pi, alpha)  # an edge has no sign: mod pi
    alpha = torch.where(alpha <= -math.pi / 2, alpha + math.pi, alpha)
    return strength, alpha


def _edge_preservation(g_src, a_src, g_f, a_f, c: dict[str, float]) -> torch.Tensor:
    """Q^{XF} (B, 1, h, w): strength and orientation preservation from source X to F."""
    ratio = torch.where(g_src > g_f, g_f / g_src.clamp_min(_EPS), g_src / g_f.clamp_min(_EPS))
    ratio = torch.where(torch.maximum(g_src, g_f) > 0, ratio, torch.zeros_like(ratio))  # no edge in either
    diff = (a_src - a_f).abs()
    diff = torch.minimum(diff, math.pi - diff)  # orientation difference modulo pi, in [0, pi/2]
    agreement = 1.0 - diff / (math.pi / 2)
    q_g = c["gamma_g"] / (1.0 + torch.exp(c["kappa_g"] * (ratio - c["sigma_g"])))
    q_a = c["gamma_a"] / (1.0 + torch.exp(c["kappa_a"] * (agreement - c["sigma_a"])))
    return q_g * q_a


def qabf(fused, source_a, source_b, constants: dict[str, float] | None = None) -> torch.Tensor:
    """Xydeas-Petrovic ``Q^{AB/F}`` of 2D images (B, 1, H, W) -> (B,), in [0, 0.975] (see :data:`QABF_CONSTANTS`).

    ``sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B)`` over the interior pixels (3 x 3 Sobel, no padding),
    ``w_X = g_X^L``. Edge orientation is compared modulo pi (an edge has no sign). 0 when neither source
    has an edge.
    """
    c = {**QABF_CONSTANTS, **(constants or {})}
    f, a = _pair(fused, source_a)
    _, b = _pair(fused, source_b)
    if f.ndim != 4:
        raise ValueError(f"qabf needs 2D images (B, 1, H, W), got shape {tuple(f.shape)}.")
    if min(f.shape[2:]) < 3:
        raise ValueError(f"qabf needs images of at least 3 x 3 pixels, got shape {tuple(f.shape)}.")
    g_f, a_f = _sobel(f)
    g_a, a_a = _sobel(a)
    g_b, a_b = _sobel(b)
    w_a, w_b = g_a ** c["L"], g_b ** c["L"]
    num = _edge_preservation(g_a, a_a, g_f, a_f, c) * w_a + _edge_preservation(g_b, a_b, g_f, a_f, c) * w_b
    den = (w_a + w_b).flatten(1).sum(dim=1)
    return num.flatten(1).sum(dim=1) / den.clamp_min(_EPS)


def _gaussian_window(size: int) -> torch.Tensor:
    """size x size Gaussian window, sigma size / 5, summing to 1 (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * (size / 5.0) ** 2))
    w = g[:, None] * g[None, :]
    return (w / w.sum())[None, None]  # (1, 1, size, size)


def vif(reference, distorted, num_scales: int = 4, sigma_nsq: float = 2.0) -> torch.Tensor:
    """Pixel-domain multi-scale VIF (Sheikh & Bovik 2006) of ``distorted`` against ``reference``, 2D, (B,).

    Images are taken to the 0-255 scale (``sigma_nsq`` is calibrated for it). Scale s = 1..4 uses a
    Gaussian window of ``N = 2^(5-s) + 1`` pixels (sigma N/5), 'valid' filtering, and from s = 2 on
    the images are low-passed and decimated by 2 first. Scales whose images are smaller than the window
    are skipped (small images). VIF(A, A) = 1.
    """
    ref, dist = _pair(reference, distorted)
    if ref.ndim != 4:
        raise ValueError(f"vif needs 2D images (B, 1, H, W), got shape {tuple(ref.shape)}.")
    ref, dist = ref * 255.0, dist * 255.0
    num = torch.zeros(ref.shape[0], dtype=torch.float64)
    den = torch.zeros(ref.shape[0], dtype=torch.float64)
    for scale in range(1, num_scales + 1):
        size = 2 ** (num_scales - scale + 1) + 1
        win = _gaussian_window(size)
        if scale > 1:
            if min(ref.shape[2:]) < size:
                break
            ref, dist = F.conv2d(ref, win)[:, :, ::2, ::2], F.conv2d(dist, win)[:, :, ::2, ::2]
        if min(ref.shape[2:]) < size:
            break
        mu1, mu2 = F.conv2d(ref, win), F.conv2d(dist, win)
        sigma1_sq = (F.conv2d(ref * ref, win) - mu1**2).clamp_min(0.0)
        sigma2_sq = (F.conv2d(dist * dist, win) - mu2**2).clamp_min(0.0)
        sigma12 = F.conv2d(ref * dist, win) - mu1 * mu2
        g = sigma12 / (sigma1_sq + _EPS)
        sv_sq = sigma2_sq - g * sigma12
        # the reference's corrections: flat reference, flat distorted image, negative gain
        flat_ref = sigma1_sq < _EPS
        g, sv_sq = torch.where(flat_ref, 0.0, g), torch.where(flat_ref, sigma2_sq, sv_sq)
        sigma1_sq = torch.where(flat_ref, 0.0, sigma1_sq)
        flat_dist = sigma2_sq < _EPS
        g, sv_sq = torch.where(flat_dist, 0.0, g), torch.where(flat_dist, 0.0, sv_sq)
        negative = g < 0
        sv_sq, g = torch.where(negative, sigma2_sq, sv_sq), torch.where(negative, 0.0, g)
        sv_sq = sv_sq.clamp_min(_EPS)
        num += torch.log10(1.0 + g**2 * sigma1_sq / (sv_sq + sigma_nsq)).flatten(1).sum(dim=1)
        den += torch.log10(1.0 + sigma1_sq / sigma_nsq).flatten(1).sum(dim=1)
    return torch.where(den > 0, num / den.clamp_min(_EPS), torch.ones_like(num))  # flat reference: 1


def fusion_vif(fused, source_a, source_b) -> torch.Tensor:
    """``(VIF(A, F) + VIF(B, F)) / 2`` (each source as the reference), (B,)."""
    return 0.5 * (vif(source_a, fused) + vif(source_b, fused))


def fusion_metrics(fused, source_a, source_b) -> dict[str, float]:
    """Batch means of ``qabf``, ``ssim``, ``vif``, ``mi`` and ``entropy`` (of F), as floats."""
    values = {
        "qabf": qabf(fused, source_a, source_b),
        "ssim": fusion_ssim(fused, source_a, source_b),
        "vif": fusion_vif(fused, source_a, source_b),
        "mi": mutual_information(fused, source_a, source_b),
        "entropy": entropy(fused),
    }
    return {k: float(v.mean()) for k, v in values.items()}


def baseline_fusion(sources, rule: str) -> torch.Tensor:
    """The pixel-wise ``"average"`` or ``"max"`` fusion of sources (B, 2, *S) -> (B, 1, *S)."""
    s = torch.as_tensor(np.asarray(sources) if not isinstance(sources, torch.Tensor) else sources)
    if rule == "average":
        return s.mean(dim=1, keepdim=True)
    if rule == "max":
        return s.amax(dim=1, keepdim=True)
    raise ValueError(f"rule={rule!r} is not a baseline fusion rule; expected 'average' or 'max'.")
