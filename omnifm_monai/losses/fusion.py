"""Unsupervised image-fusion loss in the spirit of U2Fusion (Xu et al., TPAMI 2020).

No fused ground truth exists: the loss compares the fused image with both sources.

``L = ssim_weight * sum_k w_k (1 - SSIM(F, I_k)) + gradient_weight * L_grad + intensity_weight * L_int``

- ``w_k``: the sources' information content, per sample, softmax-normalised and detached (U2Fusion's
  adaptive information preservation): ``softmax(r_k / temperature)`` with ``r_k = e_k / (e_1 + e_2)`` the
  share of gradient energy ``e_k = mean |grad I_k|^2`` (``information="gradient"``) or of the histogram
  entropy (``information="entropy"``).
- ``L_grad = mean |(|d_i F|) - max_k |d_i I_k||`` over every axis i (forward differences): F keeps the
  strongest edge of either source at each pixel.
- ``L_int = mean |F - target|`` with target ``max_k I_k`` (``intensity="max"``, keeps bright PET uptake
  on dark MR background) or ``sum_k w_k I_k`` (``intensity="weighted"``).
"""

from __future__ import annotations

import torch
from monai.losses import SSIMLoss
from torch import nn

from omnifm_monai.metrics.fusion import entropy

__all__ = ["FusionLoss", "source_information"]


def _abs_gradients(x: torch.Tensor) -> list[torch.Tensor]:
    """x (B, C, *S) -> per spatial axis |forward difference| (B, C, *S with that axis one shorter)."""
    return [torch.diff(x, dim=axis).abs() for axis in range(2, x.ndim)]


def source_information(sources: torch.Tensor, information: str = "gradient") -> torch.Tensor:
    """Each source's share of the pair's information content, (B, K, *S) -> (B, K) summing to 1 (no gradient)."""
    with torch.no_grad():
        if information == "gradient":
            energy = sum((g**2).flatten(2).mean(dim=2) for g in _abs_gradients(sources))  # (B, K)
        elif information == "entropy":
            b, k = sources.shape[:2]
            flat = sources.detach().float().cpu().reshape(b * k, 1, -1)  # every source as one image
            energy = entropy(flat[:, :, None]).reshape(b, k).to(sources.device, torch.float32)
        else:
            raise ValueError(f"information={information!r} must be 'gradient' or 'entropy'.")
        return energy / energy.sum(dim=1, keepdim=True).clamp_min(1e-12)


class FusionLoss(nn.Module):
    """The unsupervised fusion loss (see the module docstring); ``forward(fused (B, 1, *S), sources (B, 2, *S))``.

    Args:
        spatial_dims: 2 or 3.
        ssim_weight: weight of the information-weighted structure term.
        gradient_weight: weight of the max-gradient term.
        intensity_weight: weight of the intensity term.
        information: ``"gradient"`` (energy) or ``"entropy"``: how each source's weight is measured.
        temperature: softmax temperature of the weights (smaller: the richer source dominates more).
        intensity: ``"max"`` or ``"weighted"`` intensity target.
        win_size: SSIM window (MONAI ``SSIMLoss``, data range 1).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        ssim_weight: float = 1.0,
        gradient_weight: float = 10.0,
        intensity_weight: float = 1.0,
        information: str = "gradient",
        temperature: float = 0.5,
        intensity: str = "max",
        win_size: int = 7,
    ) -> None:
        super().__init__()
        if min(ssim_weight, gradient_weight, intensity_weight) < 0:
            raise ValueError(
                f"loss weights must be >= 0, got ssim {ssim_weight}, gradient {gradient_weight}, "
                f"intensity {intensity_weight}."
            )
        if information not in ("gradient", "entropy"):
            raise ValueError(f"information={information!r} must be 'gradient' or 'entropy'.")
        if intensity not in ("max", "weighted"):
            raise ValueError(f"intensity={intensity!r} must be 'max' or 'weighted'.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.spatial_dims, self.win_size = spatial_dims, win_size
        self.ssim_weight, self.gradient_weight, self.intensity_weight = ssim_weight, gradient_weight, intensity_weight
        self.information, self.temperature, self.intensity = information, temperature, intensity
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=1.0, win_size=win_size, reduction="none")

    def source_weights(self, sources: torch.Tensor) -> torch.Tensor:
        """w (B, K): softmax of the sources' information shares, no gradient."""
        return torch.softmax(source_information(sources, self.information) / self.temperature, dim=1)

    def forward(self, fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """fused (B, 1, *S), sources (B, K, *S) -> scalar loss."""
        if fused.ndim != sources.ndim or fused.shape[1] != 1 or fused.shape[2:] != sources.shape[2:]:
            raise ValueError(
                f"expected fused (B, 1, *S) and sources (B, K, *S) of one size, got {tuple(fused.shape)} "
                f"and {tuple(sources.shape)}."
            )
        sources = sources.to(fused.dtype)
        weights = self.source_weights(sources)  # (B, K)
        structure = torch.stack(
            [self.ssim(fused, sources[:, k : k + 1]).reshape(-1) for k in range(sources.shape[1])], dim=1
        )  # (B, K): 1 - SSIM(F, I_k)
        loss = self.ssim_weight * (weights * structure).sum(dim=1).mean()
        if self.gradient_weight > 0:
            grad_f, grad_s = _abs_gradients(fused), _abs_gradients(sources)
            gradient = sum((gf - gs.amax(dim=1, keepdim=True)).abs().mean() for gf, gs in zip(grad_f, grad_s))
            loss = loss + self.gradient_weight * gradient
        if self.intensity_weight > 0:
            if self.intensity == "max":
                target = sources.amax(dim=1, keepdim=True)
            else:
                shape = (*weights.shape, *([1] * (sources.ndim - 2)))
                target = (weights.reshape(shape) * sources).sum(dim=1, keepdim=True)
            loss = loss + self.intensity_weight * (fused - target).abs().mean()
        return loss
