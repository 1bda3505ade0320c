"""Low-frequency amplitude spectrum and the OmniFM spectral tokenizer.

The amplitude of an image's Fourier transform at low frequencies describes coarse anatomy
(where tissue is, how large, what shape) far more than texture or noise, and is more
consistent across modalities than pixel intensities. OmniFM turns it into a short
L2-normalised token ``s`` that the server can compare across sites.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["log_amplitude_spectrum", "low_pass_crop", "FreqMix", "SpectralTokenizer"]


def _spatial_dims_of(x: torch.Tensor) -> int:
    if x.ndim not in (4, 5):
        raise ValueError(f"expected an image batch shaped BCHW or BCDHW, got shape {tuple(x.shape)}.")
    return x.ndim - 2


def log_amplitude_spectrum(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Centred (shifted) log-amplitude spectrum ``log(1 + A)`` over the spatial axes.

    Args:
        x: image batch, the shape should be BC + spatial, i.e. (B, C, H, W) or (B, C, D, H, W).
        normalize: divide the amplitude ``A = |FFT(x)|`` by its mean over each image and channel
            first, so a global intensity scale (window, gain, stain strength) leaves it unchanged.

    Returns:
        a real tensor of the same shape as ``x``, zero frequency at the centre.
    """
    dims = tuple(range(2, 2 + _spatial_dims_of(x)))
    amplitude = torch.fft.fftn(x.float(), dim=dims, norm="ortho").abs()
    if normalize:
        amplitude = amplitude / (amplitude.mean(dim=dims, keepdim=True) + 1e-8)
    return torch.log1p(torch.fft.fftshift(amplitude, dim=dims))


def low_pass_crop(spectrum: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Keep the centred low-frequency box of a shifted spectrum.

    Args:
        spectrum: shifted spectrum (B, C, *S).
        cutoff: fraction of the Nyquist band kept along each axis, in (0, 1]; the box has
            half-width ``max(1, round(cutoff * S_i / 2))`` bins around the centre.

    Returns:
        (B, C, *s) with ``s_i = 2 * half_width_i + 1`` (clipped to ``S_i``).
    """
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(f"cutoff must be in (0, 1], got {cutoff}.")
    slices = [slice(None), slice(None)]
    for size in map(int, spectrum.shape[2:]):
        centre = size // 2
        half = max(1, round(cutoff * size / 2))
        slices.append(slice(max(0, centre - half), min(size, centre + half + 1)))
    return spectrum[tuple(slices)]


class FreqMix(nn.Module):
    """Learnable mixing over spectral bins: a residual two-layer MLP applied along the bin axis.

    Args:
        num_bins: number of spectral bins per channel (the flattened low-pass grid).
        hidden: width of the mixing layer.
    """

    def __init__(self, num_bins: int, hidden: int) -> None:
        super().__init__()
        if num_bins < 1 or hidden < 1:
            raise ValueError(f"num_bins and hidden must be >= 1, got {num_bins} and {hidden}.")
        self.norm = nn.LayerNorm(num_bins)
        self.mix = nn.Sequential(nn.Linear(num_bins, hidden), nn.GELU(), nn.Linear(hidden, num_bins))

    def forward(self, bins: torch.Tensor) -> torch.Tensor:
        """bins: (B, C, N) -> (B, C, N)."""
        return bins + self.mix(self.norm(bins))


class SpectralTokenizer(nn.Module):
    """Image -> L2-normalised spectral token ``s`` of size ``token_dim``.

    Pipeline: shifted log-amplitude FFT (amplitude normalised by its mean, so a global
    intensity scale does not matter) -> centred low-pass crop (``cutoff``) -> adaptive
    average pooling to a fixed ``grid`` (so any input size gives the same number of bins)
    -> per-sample standardisation -> :class:`FreqMix` -> projection to ``token_dim`` -> mean pooling
    over channels (grey and RGB sites land in one token space) -> L2 normalisation.

    Args:
        spatial_dims: 2 or 3.
        token_dim: d_s, size of the token.
        cutoff: low-pass cutoff as a fraction of the Nyquist band.
        grid: bins per spatial axis after pooling the low-pass box.
        hidden: width of the FreqMix layer.

    Example::

        tokenizer = SpectralTokenizer(spatial_dims=2, token_dim=64)
        s = tokenizer(torch.rand(4, 3, 64, 64))  # (4, 64), unit norm
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        token_dim: int = 64,
        cutoff: float = 0.1,
        grid: int = 8,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if token_dim < 1:
            raise ValueError(f"token_dim must be >= 1, got {token_dim}.")
        if not 0.0 < cutoff <= 1.0:
            raise ValueError(f"cutoff must be in (0, 1], got {cutoff}.")
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}.")
        self.spatial_dims = spatial_dims
        self.token_dim = token_dim
        self.cutoff = cutoff
        self.grid = grid
        num_bins = grid**spatial_dims
        self.freq_mix = FreqMix(num_bins, hidden)
        self.projection = nn.Linear(num_bins, token_dim)

    def spectral_bins(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised low-pass bins before any learnable layer: (B, C, *S) -> (B, C, grid**dims)."""
        if _spatial_dims_of(x) != self.spatial_dims:
            raise ValueError(f"SpectralTokenizer(spatial_dims={self.spatial_dims}) got input shape {tuple(x.shape)}.")
        low = low_pass_crop(log_amplitude_spectrum(x), self.cutoff)  # (B, C, *s)
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        bins = pool(low, self.grid).flatten(2)  # (B, C, N)
        mean = bins.mean(dim=(1, 2), keepdim=True)
        std = bins.std(dim=(1, 2), keepdim=True, unbiased=False)
        return (bins - mean) / (std + 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *S) -> s: (B, token_dim), unit L2 norm."""
        bins = self.spectral_bins(x)  # (B, C, N)
        tokens = self.projection(self.freq_mix(bins))  # (B, C, d_s)
        return F.normalize(tokens.mean(dim=1), dim=-1)  # pool channels -> (B, d_s)
