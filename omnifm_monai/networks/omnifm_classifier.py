"""OmniFM classifier: MONAI ResNet tokens -> ECA with spectral prototypes -> PSP -> head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import TransformerBlock
from torch import nn

from omnifm_monai.networks.backbones import ResNetTokens
from omnifm_monai.networks.base import OmniFMNetwork
from omnifm_monai.networks.spectral_options import SpectralOptionsLike

__all__ = ["OmniFMClassifier"]


class OmniFMClassifier(OmniFMNetwork):
    """Image classifier with the OmniFM spectral path, 2D or 3D.

    ``forward(image)`` returns logits (B, num_classes). Inside:

    1. backbone: :class:`~omnifm_monai.networks.backbones.ResNetTokens`, MONAI's ResNet (basic blocks;
       ``layers`` = (2, 2, 2, 2) is ResNet-18) without its pooling/FC -> feature map (B, d, *s) ->
       tokens r (B, L, d), ``L = prod(s)``.
    2. spectral path (``spectral=True``, :class:`~omnifm_monai.networks.base.OmniFMNetwork`):
       token s (B, d_s), prototypes S_g (B, K, d_s), Z = ECA(r, [s || S_g]) (B, L, d).
    3. PSP: [Z || r || c], c private to the site (``prompt=True``).
    4. head: one MONAI :class:`~monai.networks.blocks.TransformerBlock` over the sequence,
       read out at c (or the sequence mean without a suffix), LayerNorm, linear ``task_head``.

    With ``spectral=False, prompt=False`` this is a plain ResNet + attention head: the
    baselines (FedAvg, FedProx, FedPer, FedBN, local) use exactly the same backbone and head.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: output classes (the union label space in a federation).
        layers: basic blocks per ResNet stage.
        channels: widths of the four stages; d = ``channels[-1]``.
        stem_stride: stride of the first convolution (1 keeps detail on small images).
        spectral: use the tokenizer, prototype retrieval and ECA.
        prompt: use the private suffix c.
        spectral_options: :class:`~omnifm_monai.networks.SpectralPathOptions` (or a mapping of its
            fields): token_dim, cutoff, top_k, memory_capacity and num_heads (of the ECA and the head
            attention).
        dropout_rate: dropout before the classifier.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 2,
        layers: Sequence[int] = (1, 1, 1, 1),
        channels: Sequence[int] = (32, 64, 128, 256),
        stem_stride: int = 1,
        spectral: bool = True,
        prompt: bool = True,
        spectral_options: SpectralOptionsLike = None,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}.")
        options = self.set_spectral_options(spectral_options)
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.layers, self.channels, self.stem_stride = list(layers), list(channels), stem_stride
        self.dropout_rate = dropout_rate
        self.backbone = ResNetTokens(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            layers=layers,
            channels=channels,
            stem_stride=stem_stride,
        )
        hidden = int(channels[-1])
        self.build_spectral_path(spatial_dims, hidden, spectral=spectral, prompt=prompt)
        self.head = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=options.num_heads)
        self.head_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout_rate)
        self.task_head = nn.Linear(hidden, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> logits (B, num_classes)."""
        tokens = self.backbone(image)  # (B, L, d)
        sequence = self.head(self.prompt_sequence(image, tokens))  # (B, L', d)
        readout = sequence[:, -1] if self.prompt else sequence.mean(dim=1)  # (B, d)
        return self.task_head(self.dropout(self.head_norm(readout)))
