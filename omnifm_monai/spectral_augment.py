"""Amplitude-spectrum operations on image batches: FedDG-ELCFS's interpolation, HarmoFL's normalisation.

Both methods split an image's FFT into amplitude and phase, change the amplitude inside a centred
low-frequency window and keep the phase (which carries the structure):

- FedDG-ELCFS (Liu et al., CVPR 2021): the window's amplitude becomes
  ``(1 - lam) * A_local + lam * A_other`` with another site's amplitude ``A_other`` and ``lam ~ U(0, 1)``;
- HarmoFL (Jiang et al., AAAI 2022): the window's amplitude becomes the site's mean amplitude.

Images are (B, C, *S) with any number of spatial dims; the FFT runs over the spatial dims. The
window of half-width ``b = floor(min(S) * band_ratio)`` covers ``2b + 1`` bins per spatial dim around
the zero frequency of the shifted spectrum (``band_ratio = 0``: the zero frequency alone), as both
papers' code defines it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_band_ratio",
    "band_half_width",
    "low_band_slices",
    "amplitude_phase",
    "low_band_amplitude",
    "interpolate_low_band",
    "normalise_low_band",
]


def check_band_ratio(band_ratio: float) -> float:
    """``band_ratio`` itself, if it is in [0, 0.5) (the window stays inside the spectrum).

    Raises:
        ValueError: ``band_ratio`` is outside [0, 0.5).
    """
    if not 0.0 <= band_ratio < 0.5:
        raise ValueError(f"band_ratio must be in [0, 0.5), got {band_ratio!r}.")
    return band_ratio


def band_half_width(spatial_shape: Sequence[int], band_ratio: float) -> int:
    """``b = floor(min(S) * band_ratio)``: the window spans ``2b + 1`` bins per spatial dim.

    Raises:
        ValueError: ``band_ratio`` is outside [0, 0.5).
    """
    return int(math.floor(min(spatial_shape) * check_band_ratio(band_ratio)))


def low_band_slices(spatial_shape: Sequence[int], band_ratio: float) -> tuple[slice, ...]:
    """The centred window of a ``fftshift``-ed spectrum, one slice per spatial dim."""
    b = band_half_width(spatial_shape, band_ratio)
    return tuple(slice(n // 2 - b, n // 2 + b + 1) for n in spatial_shape)


def _spatial_dims(images: torch.Tensor) -> tuple[int, ...]:
    if images.ndim < 3:
        raise ValueError(f"images must be (B, C, *S) with at least one spatial dim, got shape {tuple(images.shape)}.")
    return tuple(range(2, images.ndim))


def amplitude_phase(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase of the spatial FFT of (B, C, *S) images; both (B, C, *S), unshifted."""
    spectrum = torch.fft.fftn(images.float(), dim=_spatial_dims(images))  # (B, C, *S) complex
    return spectrum.abs(), spectrum.angle()


def _from_amplitude_phase(amplitude: torch.Tensor, phase: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    spectrum = torch.polar(amplitude, phase)  # (B, C, *S) complex
    return torch.fft.ifftn(spectrum, dim=_spatial_dims(like)).real.to(like.dtype)


def low_band_amplitude(images: torch.Tensor, band_ratio: float) -> torch.Tensor:
    """The shifted amplitude inside the low-frequency window: (B, C, *W), W = 2b + 1 per spatial dim."""
    dims = _spatial_dims(images)
    amplitude, _ = amplitude_phase(images)
    shifted = torch.fft.fftshift(amplitude, dim=dims)  # zero frequency at S // 2
    return shifted[(..., *low_band_slices(images.shape[2:], band_ratio))]


def _replace_low_band(images: torch.Tensor, band_ratio: float, new_band) -> torch.Tensor:
    """Images whose window amplitude is ``new_band(old_window)`` (B, C, *W); phase and other bins kept."""
    dims = _spatial_dims(images)
    amplitude, phase = amplitude_phase(images)
    shifted = torch.fft.fftshift(amplitude, dim=dims)  # (B, C, *S)
    window = (..., *low_band_slices(images.shape[2:], band_ratio))
    shifted[window] = new_band(shifted[window])
    return _from_amplitude_phase(torch.fft.ifftshift(shifted, dim=dims), phase, images)


def interpolate_low_band(
    images: torch.Tensor, other_band: torch.Tensor, ratio: torch.Tensor | float, *, band_ratio: float
) -> torch.Tensor:
    """FedDG-ELCFS's continuous frequency-space interpolation, image by image.

    Args:
        images: (B, C, *S) the site's images.
        other_band: (B, C, *W) another site's low-band amplitude for each image (:func:`low_band_amplitude`).
        ratio: (B,) or a float, the weight ``lam`` of the other site's amplitude (0: unchanged, 1: swapped).
        band_ratio: the window's size (see the module docstring).

    Returns:
        (B, C, *S) images with their phase and their amplitude outside the window unchanged.

    Raises:
        ValueError: ``other_band`` does not have the window's shape.
    """
    expected = (*images.shape[:2], *[2 * band_half_width(images.shape[2:], band_ratio) + 1] * (images.ndim - 2))
    if tuple(other_band.shape) != expected:
        raise ValueError(f"other_band must have shape {expected} (B, C, *W), got {tuple(other_band.shape)}.")
    lam = torch.as_tensor(ratio, dtype=torch.float32, device=images.device).reshape(-1)
    lam = lam.expand(images.shape[0]).reshape(-1, *[1] * (images.ndim - 1))  # (B, 1, ..., 1)
    other = other_band.to(images.device, torch.float32)
    return _replace_low_band(images, band_ratio, lambda own: (1 - lam) * own + lam * other)


def normalise_low_band(images: torch.Tensor, mean_amplitude: torch.Tensor, *, band_ratio: float) -> torch.Tensor:
    """HarmoFL's amplitude normalisation: the window's amplitude becomes the site's mean amplitude.

    Args:
        images: (B, C, *S).
        mean_amplitude: (C, *S) the site's mean *unshifted* amplitude (``amplitude_phase(x)[0].mean(0)``).
        band_ratio: the window's size (HarmoFL's code: 0, the zero frequency alone).

    Raises:
        ValueError: ``mean_amplitude`` is not (C, *S) of ``images``.
    """
    if tuple(mean_amplitude.shape) != tuple(images.shape[1:]):
        raise ValueError(
            f"mean_amplitude must have shape {tuple(images.shape[1:])} (C, *S), got {tuple(mean_amplitude.shape)}."
        )
    dims = tuple(d - 1 for d in _spatial_dims(images))  # the spatial dims of (C, *S)
    shifted_mean = torch.fft.fftshift(mean_amplitude.to(images.device, torch.float32), dim=dims)
    target = shifted_mean[(..., *low_band_slices(images.shape[2:], band_ratio))]  # (C, *W)
    return _replace_low_band(images, band_ratio, lambda own: target.expand_as(own).clone())
