"""The ResNet-token backbone of the OmniFM classifier and VQA network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ResNet

__all__ = ["ResNetTokens"]


class ResNetTokens(ResNet):
    """MONAI :class:`~monai.networks.nets.ResNet` (basic blocks) without pooling/FC, read out as tokens.

    ``forward(image)`` maps (B, C, *S) to tokens r (B, L, d), ``d = channels[-1]``, ``L = prod(s)`` for
    the last stage's feature map (B, d, *s). Its parameters are MONAI's (``conv1``, ``bn1``,
    ``layer1`` .. ``layer4``), so checkpoints keep MONAI's key names.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        layers: basic blocks per stage (four stages; (2, 2, 2, 2) is ResNet-18).
        channels: widths of the four stages.
        stem_stride: stride of the first convolution (1 keeps detail on small images).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        layers: Sequence[int],
        channels: Sequence[int],
        stem_stride: int,
    ) -> None:
        if len(layers) != 4 or len(channels) != 4:
            raise ValueError(f"layers and channels need 4 stages each, got {tuple(layers)} and {tuple(channels)}.")
        super().__init__(
            block="basic",
            layers=list(layers),
            block_inplanes=list(channels),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=stem_stride,
            feed_forward=False,
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> r (B, L, d)."""
        x = self.act(self.bn1(self.conv1(image)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, d, *s)
        return x.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)
