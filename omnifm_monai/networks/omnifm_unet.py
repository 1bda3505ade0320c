"""OmniFM U-Net: MONAI BasicUNet encoder -> bottleneck tokens -> ECA/PSP + attention mixer -> decoder -> head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import TransformerBlock
from monai.networks.layers import Conv
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

from omnifm_monai.networks.base import OmniFMNetwork
from omnifm_monai.networks.spectral_options import SpectralOptionsLike

__all__ = ["OmniFMUNet"]


class OmniFMUNet(OmniFMNetwork):
    """Semantic segmentation U-Net with the OmniFM spectral path at its bottleneck, 2D or 3D.

    ``forward(image)`` returns logits (B, num_classes, *S). Inside:

    1. encoder: the blocks of MONAI's :class:`~monai.networks.nets.BasicUNet` (``conv_0``, ``down_1`` ..
       ``down_4``: two 3x3 convolutions per level, instance norm, LeakyReLU, max pooling) -> bottleneck
       feature map (B, d, *s), ``d = features[4]``, ``s = S / 16`` -> tokens r (B, L, d), ``L = prod(s)``.
    2. spectral path (``spectral=True``, :class:`~omnifm_monai.networks.base.OmniFMNetwork`):
       token s (B, d_s), prototypes S_g (B, K, d_s), Z = ECA(r, [s || S_g]) (B, L, d).
    3. PSP: [Z || r || c], c private to the site (``prompt=True``); one MONAI
       :class:`~monai.networks.blocks.TransformerBlock` mixes the sequence, the tokens at r's positions
       are read back (:meth:`token_positions`), reshaped to (B, d, *s) and added to the bottleneck
       (a residual: the convolutional features keep their spatial detail).
    4. decoder: BasicUNet's ``upcat_4`` .. ``upcat_1`` (skip connections), then the 1x1 convolution
       ``task_head`` -> num_classes logits per pixel/voxel.

    With ``spectral=False, prompt=False`` this is the plain U-Net with a transformer bottleneck the
    baselines (FedAvg, FedProx, FedPer, FedBN, local) use.

    Spatial sizes divisible by 16 and >= 32 are needed in practice (four poolings; instance norm needs a
    bottleneck of more than one pixel); other multiples are padded by ``UpCat``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: output classes (background included).
        features: six widths, as BasicUNet's: five encoder levels, then the last decoder level.
        spectral: use the tokenizer, prototype retrieval and ECA.
        prompt: use the private suffix c.
        spectral_options: :class:`~omnifm_monai.networks.SpectralPathOptions` (or a mapping of its
            fields): token_dim, cutoff, top_k, memory_capacity and num_heads (the heads of
            the ECA and of the mixer, must divide ``features[4]``).
        dropout: dropout of the convolution blocks and of the mixer.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 128, 16),
        spectral: bool = True,
        prompt: bool = True,
        spectral_options: SpectralOptionsLike = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_heads = self.set_spectral_options(spectral_options).num_heads
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}.")
        if len(features) != 6 or min(features) < 1:
            raise ValueError(f"features needs 6 positive widths (5 encoder levels + last decoder), got {features}.")
        hidden = int(features[4])
        if hidden % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the bottleneck width features[4]={hidden}.")
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.features = [int(f) for f in features]
        self.dropout = dropout
        f = self.features
        act, norm = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), ("instance", {"affine": True})
        self.conv_0 = TwoConv(spatial_dims, in_channels, f[0], act, norm, True, dropout)
        self.down_1 = Down(spatial_dims, f[0], f[1], act, norm, True, dropout)
        self.down_2 = Down(spatial_dims, f[1], f[2], act, norm, True, dropout)
        self.down_3 = Down(spatial_dims, f[2], f[3], act, norm, True, dropout)
        self.down_4 = Down(spatial_dims, f[3], f[4], act, norm, True, dropout)
        self.build_spectral_path(spatial_dims, hidden, spectral=spectral, prompt=prompt)
        self.mixer = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads, dropout_rate=dropout)
        self.upcat_4 = UpCat(spatial_dims, f[4], f[3], f[3], act, norm, True, dropout, "deconv")
        self.upcat_3 = UpCat(spatial_dims, f[3], f[2], f[2], act, norm, True, dropout, "deconv")
        self.upcat_2 = UpCat(spatial_dims, f[2], f[1], f[1], act, norm, True, dropout, "deconv")
        self.upcat_1 = UpCat(spatial_dims, f[1], f[0], f[5], act, norm, True, dropout, "deconv", halves=False)
        self.task_head = Conv["conv", spatial_dims](f[5], num_classes, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> logits (B, num_classes, *S)."""
        x0 = self.conv_0(image)  # (B, f0, *S)
        x1 = self.down_1(x0)  # (B, f1, *S/2)
        x2 = self.down_2(x1)  # (B, f2, *S/4)
        x3 = self.down_3(x2)  # (B, f3, *S/8)
        x4 = self.down_4(x3)  # (B, d, *s), s = S/16
        tokens = x4.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)
        num_tokens = tokens.shape[1]
        sequence = self.mixer(self.prompt_sequence(image, tokens))  # [Z || r || c] mixed: (B, L', d)
        modulated = self.token_positions(sequence, num_tokens)  # (B, L, d)
        x4 = x4 + modulated.transpose(1, 2).reshape(x4.shape)  # (B, L, d) -> (B, d, *s), residual
        u4 = self.upcat_4(x4, x3)  # (B, f3, *S/8)
        u3 = self.upcat_3(u4, x2)  # (B, f2, *S/4)
        u2 = self.upcat_2(u3, x1)  # (B, f1, *S/2)
        u1 = self.upcat_1(u2, x0)  # (B, f5, *S)
        return self.task_head(u1)  # (B, num_classes, *S)
