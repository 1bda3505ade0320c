"""OmniFM super-resolution: residual LR encoder -> coarse tokens through ECA/PSP -> sub-pixel upsampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit, SubpixelUpsample, TransformerBlock
from torch import nn

from omnifm_monai.networks.base import OmniFMNetwork
from omnifm_monai.networks.spectral_options import SpectralOptionsLike

__all__ = ["OmniFMSuperResolution", "SCALES", "bicubic_upsample"]

SCALES: tuple[int, ...] = (2, 4, 8)
"""Upscaling factors :class:`OmniFMSuperResolution` supports."""


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The interpolation baseline: lr (B, C, *S) -> (B, C, *S * scale), not clipped.

    2D images use bicubic interpolation; 3D volumes trilinear (PyTorch has no tricubic mode).
    """
    if lr.ndim not in (4, 5):
        raise ValueError(f"expected lr shaped (B, C, H, W) or (B, C, D, H, W), got {tuple(lr.shape)}.")
    mode = "bicubic" if lr.ndim == 4 else "trilinear"
    return F.interpolate(lr, scale_factor=float(scale), mode=mode, align_corners=False)


class OmniFMSuperResolution(OmniFMNetwork):
    """Single-image super-resolution with the OmniFM spectral path, 2D or 3D.

    ``forward(lr)`` maps a low-resolution image (B, C, *S) to (B, C, *S * scale). Inside:

    1. encoder at LR resolution: a MONAI :class:`~monai.networks.blocks.Convolution` to ``features``
       channels, ``num_res_units`` MONAI :class:`~monai.networks.blocks.ResidualUnit` (no normalisation,
       as in EDSR) and a long skip -> f (B, F, *S).
    2. embedding: a strided convolution (stride ``embed_stride``) -> (B, d, *s), ``d = 2 * features``,
       tokens r (B, L, d), ``L = prod(s)``.
    3. spectral path on the LR input (``spectral=True``): Z = ECA(r, [s || S_g]); PSP [Z || r || c]
       (c private, ``prompt=True``); a MONAI :class:`~monai.networks.blocks.TransformerBlock` mixes the
       sequence; r's positions are read back (:meth:`token_positions`), reshaped to (B, d, *s), projected
       to F channels, upsampled to *S and added to f (global context).
    4. reconstruction: log2(scale) MONAI :class:`~monai.networks.blocks.SubpixelUpsample` x2 stages ->
       (B, F, *S * scale), then the convolution ``task_head`` -> (B, C, *S * scale), added to the bicubic
       upsampling of the input (global residual: the network learns only the missing detail).

    ``task_head`` starts near zero, so an untrained network already gives the bicubic image. With
    ``spectral=False, prompt=False`` the same encoder, mixer and decoder form the baselines' network.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (input and output).
        scale: upscaling factor, one of :data:`SCALES`.
        features: F, channels of the LR feature maps.
        num_res_units: residual units of the encoder (>= 0).
        spectral: use the tokenizer, prototype retrieval and ECA.
        prompt: use the private suffix c.
        spectral_options: :class:`~omnifm_monai.networks.SpectralPathOptions` (or a mapping of its
            fields): token_dim, cutoff, top_k, memory_capacity and num_heads (the heads of
            the ECA and the mixer, must divide ``2 * features``).
        embed_stride: stride of the embedding convolution (the token grid is the LR grid / embed_stride,
            rounded up).

    Raises:
        ValueError: for an unsupported ``spatial_dims``, ``scale`` or channel/head count.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        scale: int = 2,
        features: int = 32,
        num_res_units: int = 4,
        spectral: bool = True,
        prompt: bool = True,
        spectral_options: SpectralOptionsLike = None,
        embed_stride: int = 4,
    ) -> None:
        super().__init__()
        num_heads = self.set_spectral_options(spectral_options).num_heads
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}.")
        if in_channels < 1 or features < 1 or num_res_units < 0 or embed_stride < 1:
            raise ValueError(
                f"in_channels, features, embed_stride must be >= 1 and num_res_units >= 0, got {in_channels}, "
                f"{features}, {embed_stride} and {num_res_units}."
            )
        hidden = 2 * features
        if hidden % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the token width 2 * features = {hidden}.")
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.spatial_dims, self.in_channels, self.scale = spatial_dims, in_channels, scale
        self.features, self.num_res_units, self.embed_stride = features, num_res_units, embed_stride

        self.stem = Convolution(spatial_dims, in_channels, features, kernel_size=3, conv_only=True)
        self.encoder = nn.Sequential(
            *(
                ResidualUnit(spatial_dims, features, features, kernel_size=3, subunits=2, act="PRELU", norm=None)
                for _ in range(num_res_units)
            )
        )
        self.embed = Convolution(
            spatial_dims, features, hidden, strides=embed_stride, kernel_size=3, act="PRELU", norm=None
        )
        self.build_spectral_path(spatial_dims, hidden, spectral=spectral, prompt=prompt)
        self.mixer = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.context = Convolution(spatial_dims, hidden, features, kernel_size=1, conv_only=True)
        self.upsample = nn.Sequential(
            *(SubpixelUpsample(spatial_dims, features, features, scale_factor=2) for _ in range(int(math.log2(scale))))
        )
        self.task_head = Convolution(spatial_dims, features, in_channels, kernel_size=3, conv_only=True)
        head_conv = self.task_head.conv
        nn.init.normal_(head_conv.weight, std=1e-3)  # starts at (almost) the bicubic image
        nn.init.zeros_(head_conv.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """lr (B, C, *S) -> sr (B, C, *S * scale), not clipped."""
        if lr.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected lr with {self.spatial_dims} spatial axes, got shape {tuple(lr.shape)}.")
        shallow = self.stem(lr)  # (B, F, *S)
        feats = self.encoder(shallow) + shallow  # (B, F, *S)
        emb = self.embed(feats)  # (B, d, *s)
        num_tokens = emb[0, 0].numel()  # L = prod(s)
        tokens = emb.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)
        sequence = self.mixer(self.prompt_sequence(lr, tokens))  # (B, L', d)
        mixed = self.token_positions(sequence, num_tokens)  # (B, L, d)
        grid = mixed.transpose(1, 2).reshape(emb.shape)  # (B, L, d) -> (B, d, *s)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        context = F.interpolate(self.context(grid), size=feats.shape[2:], mode=mode, align_corners=False)
        detail = self.task_head(self.upsample(feats + context))  # (B, C, *S * scale)
        return bicubic_upsample(lr, self.scale) + detail
