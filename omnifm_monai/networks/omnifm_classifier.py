"""OmniFM classifier: MONAI ResNet tokens -> ECA with spectral prototypes -> PSP -> head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import TransformerBlock
from monai.networks.nets import ResNet
from torch import nn

from omnifm_monai.networks.base import OmniFMNetwork

__all__ = ["OmniFMClassifier"]


class OmniFMClassifier(OmniFMNetwork):
    """Image classifier with the OmniFM spectral path, 2D or 3D.

    ``forward(image)`` returns logits (B, num_classes). Inside:

    1. backbone: MONAI :class:`~monai.networks.nets.ResNet` (basic blocks; ``layers`` =
       (2, 2, 2, 2) is ResNet-18) without its pooling/FC -> feature map (B, d, *s) -> tokens
       r (B, L, d), ``L = prod(s)``.
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
        token_dim: d_s.
        cutoff: low-pass cutoff of the tokenizer (fraction of the Nyquist band).
        top_k: prototypes per sample.
        memory_capacity: prototypes the site's bank can hold.
        num_heads: heads of the ECA and head attention.
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
        token_dim: int = 64,
        cutoff: float = 0.1,
        top_k: int = 4,
        memory_capacity: int = 64,
        num_heads: int = 4,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}.")
        if len(layers) != 4 or len(channels) != 4:
            raise ValueError(f"layers and channels need 4 stages each, got {tuple(layers)} and {tuple(channels)}.")
        hidden = int(channels[-1])
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.layers, self.channels, self.stem_stride = list(layers), list(channels), stem_stride
        self.cutoff = cutoff
        self.top_k, self.memory_capacity, self.num_heads = top_k, memory_capacity, num_heads
        self.dropout_rate = dropout_rate
        self.backbone = ResNet(
            block="basic",
            layers=list(layers),
            block_inplanes=list(channels),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=stem_stride,
            feed_forward=False,
        )
        self.build_spectral_path(
            spatial_dims,
            hidden,
            spectral=spectral,
            prompt=prompt,
            token_dim=token_dim,
            cutoff=cutoff,
            top_k=top_k,
            memory_capacity=memory_capacity,
            num_heads=num_heads,
        )
        self.head = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.head_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout_rate)
        self.task_head = nn.Linear(hidden, num_classes)

    def backbone_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> r (B, L, d)."""
        net = self.backbone
        x = net.act(net.bn1(net.conv1(image)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))  # (B, d, *s)
        return x.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> logits (B, num_classes)."""
        tokens = self.backbone_tokens(image)  # (B, L, d)
        sequence = self.head(self.prompt_sequence(image, tokens))  # (B, L', d)
        readout = sequence[:, -1] if self.prompt else sequence.mean(dim=1)  # (B, d)
        return self.task_head(self.dropout(self.head_norm(readout)))
