"""OmniFM fusion network: two co-registered sources -> one fused image, with the OmniFM spectral path."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit, TransformerBlock
from torch import nn

from omnifm_monai.networks.base import OmniFMNetwork
from omnifm_monai.networks.spectral_options import SpectralOptionsLike

__all__ = ["OmniFMFusion"]


class OmniFMFusion(OmniFMNetwork):
    """Multi-modal image fusion with the OmniFM spectral path, 2D or 3D.

    ``forward(image)`` takes the two sources stacked on channels, (B, 2, *S), and returns the fused
    image (B, 1, *S) in [0, 1] (sigmoid). Inside:

    1. encoder: MONAI :class:`~monai.networks.blocks.ResidualUnit` stages of widths ``features``, the
       first at full resolution, each further one at half the previous resolution (skips kept);
    2. embedding: a strided MONAI :class:`~monai.networks.blocks.Convolution` to width d =
       ``features[-1]`` -> tokens r (B, L, d), ``L = prod(S) / 2^(dims * len(features))``;
    3. OmniFM: [Z || r || c] from :meth:`OmniFMNetwork.prompt_sequence`, one MONAI
       :class:`~monai.networks.blocks.TransformerBlock` mixer, r's positions read back with
       :meth:`OmniFMNetwork.token_positions`;
    4. decoder: transposed-convolution upsampling + skip concatenation + ResidualUnit per stage back to
       full resolution; ``task_head`` a 1 x 1 convolution to one channel, then a sigmoid.

    ``spectral=False, prompt=False`` gives the plain encoder-transformer-decoder baseline.

    Args:
        spatial_dims: 2 or 3.
        in_channels: sources stacked on channels (2).
        features: encoder widths, one stage each; every spatial size must be divisible by
            ``2 ** len(features)``.
        spectral: use the tokenizer, prototype retrieval and ECA.
        prompt: use the private suffix c.
        spectral_options: :class:`~omnifm_monai.networks.SpectralPathOptions` (or a mapping of its
            fields): token_dim, cutoff, top_k, memory_capacity and num_heads (the heads of
            the ECA and the mixer, must divide ``features[-1]``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        features: Sequence[int] = (8, 16, 32),
        spectral: bool = True,
        prompt: bool = True,
        spectral_options: SpectralOptionsLike = None,
    ) -> None:
        super().__init__()
        num_heads = self.set_spectral_options(spectral_options).num_heads
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        if len(features) < 1 or min(features) < 1:
            raise ValueError(f"features needs at least one positive width, got {tuple(features)}.")
        hidden = int(features[-1])
        if hidden % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the last width features[-1]={hidden}.")
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.spatial_dims, self.in_channels, self.features = spatial_dims, in_channels, list(features)
        self.encoder = nn.ModuleList()
        channels = in_channels
        for i, width in enumerate(self.features):
            self.encoder.append(
                ResidualUnit(spatial_dims, channels, width, strides=1 if i == 0 else 2, subunits=1, norm="instance")
            )
            channels = width
        self.embedding = Convolution(spatial_dims, channels, hidden, strides=2, kernel_size=3, norm="instance")
        self.build_spectral_path(spatial_dims, hidden, spectral=spectral, prompt=prompt)
        self.mixer = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        channels = hidden
        for width in reversed(self.features):
            self.up.append(Convolution(spatial_dims, channels, width, strides=2, kernel_size=3, is_transposed=True))
            self.decoder.append(ResidualUnit(spatial_dims, 2 * width, width, subunits=1, norm="instance"))
            channels = width
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.task_head = conv(channels, 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: sources (B, in_channels, *S) -> fused (B, 1, *S) in [0, 1]."""
        if image.ndim != self.spatial_dims + 2 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"expected sources (B, {self.in_channels}, *S) with {self.spatial_dims} spatial dims, "
                f"got {tuple(image.shape)}."
            )
        factor = 2 ** len(self.features)
        if any(s % factor for s in image.shape[2:]):
            raise ValueError(f"every spatial size of {tuple(image.shape)} must be divisible by {factor}.")
        skips = []
        x = image
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)  # (B, f_i, *S / 2^i)
        x = self.embedding(x)  # (B, d, *s)
        b, d, *coarse = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)
        sequence = self.mixer(self.prompt_sequence(image, tokens))  # (B, L', d)
        x = self.token_positions(sequence, tokens.shape[1]).transpose(1, 2).reshape(b, d, *coarse)  # (B, d, *s)
        for up, decode, skip in zip(self.up, self.decoder, reversed(skips)):
            x = decode(torch.cat([up(x), skip], dim=1))  # (B, f_i, *S / 2^i)
        return torch.sigmoid(self.task_head(x))  # (B, 1, *S)
