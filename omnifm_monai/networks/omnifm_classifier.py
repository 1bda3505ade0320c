"""OmniFM classifier: MONAI ResNet tokens -> ECA with spectral prototypes -> PSP -> head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import TransformerBlock
from monai.networks.nets import ResNet
from torch import nn

from omnifm_monai.blocks import EmbeddingCrossAttention, PrefixSuffixPrompt, PrototypeMemory
from omnifm_monai.losses import spalign_loss
from omnifm_monai.spectral import SpectralTokenizer

__all__ = ["OmniFMClassifier"]


class OmniFMClassifier(nn.Module):
    """Image classifier with the OmniFM spectral path, 2D or 3D.

    ``forward(image)`` returns logits (B, num_classes). Inside:

    1. backbone: MONAI :class:`~monai.networks.nets.ResNet` (basic blocks; ``layers`` =
       (2, 2, 2, 2) is ResNet-18) without its pooling/FC -> feature map (B, d, *s) -> tokens
       r (B, L, d), ``L = prod(s)``.
    2. spectral path (``spectral=True``): token s = :class:`SpectralTokenizer` (x), (B, d_s);
       S_g = top-k of the site's prototype bank (:class:`PrototypeMemory`), (B, K, d_s);
       Z = :class:`EmbeddingCrossAttention` (r, [s || S_g]). The site's own token is part of
       the context so the tokenizer also learns from the task loss (not only from SPAlign,
       which alone would let every token collapse onto the prototypes' mean).
    3. :class:`PrefixSuffixPrompt`: [Z || r || c], c private to the site (``prompt=True``).
    4. head: one MONAI :class:`~monai.networks.blocks.TransformerBlock` over the sequence,
       read out at c (or the sequence mean without a suffix), LayerNorm, linear classifier.

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
        self.spectral, self.prompt, self.token_dim, self.cutoff = spectral, prompt, token_dim, cutoff
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
        if spectral:
            self.tokenizer = SpectralTokenizer(spatial_dims=spatial_dims, token_dim=token_dim, cutoff=cutoff)
            self.spectral_memory = PrototypeMemory(token_dim, capacity=memory_capacity, top_k=top_k)
            self.eca = EmbeddingCrossAttention(hidden, token_dim, num_heads=num_heads)
        self.psp = PrefixSuffixPrompt(hidden, use_prefix=spectral, use_suffix=prompt)
        self.head = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.head_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout_rate)
        self.classifier = nn.Linear(hidden, num_classes)
        # the last forward's token s (B, d_s) and prototypes S_g (B, K, d_s), read by spalign_term()
        self._last_token: torch.Tensor | None = None
        self._last_prototypes: torch.Tensor | None = None

    def backbone_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> r (B, L, d)."""
        net = self.backbone
        x = net.act(net.bn1(net.conv1(image)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))  # (B, d, *s)
        return x.flatten(2).transpose(1, 2)  # (B, d, L) -> (B, L, d)

    def spectral_token(self, image: torch.Tensor) -> torch.Tensor:
        """s (B, d_s): what the site summarises (as centroids) for the server's knowledge base."""
        if not self.spectral:
            raise RuntimeError("spectral_token() needs a network built with spectral=True.")
        return self.tokenizer(image)

    def set_prototypes(self, prototypes) -> None:
        """Load the prototypes (P, d_s) the server retrieved for this site."""
        if not self.spectral:
            raise RuntimeError("set_prototypes() needs a network built with spectral=True.")
        self.spectral_memory.set_prototypes(prototypes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S) -> logits (B, num_classes)."""
        tokens = self.backbone_tokens(image)  # (B, L, d)
        prefix = tokens
        if self.spectral:
            token = self.tokenizer(image)  # (B, d_s)
            prototypes = self.spectral_memory(token)  # (B, K, d_s)
            context = torch.cat([token.unsqueeze(1), prototypes], dim=1)  # (B, 1 + K, d_s)
            prefix = self.eca(tokens, context)  # (B, L, d)
            self._last_token, self._last_prototypes = token, prototypes
        sequence = self.head(self.psp(prefix, tokens))  # (B, L', d)
        readout = sequence[:, -1] if self.prompt else sequence.mean(dim=1)  # (B, d)
        return self.classifier(self.dropout(self.head_norm(readout)))

    def spalign_term(self) -> torch.Tensor:
        """SPAlign of the last forward pass (0 without the spectral path or before any forward)."""
        if self._last_token is None or self._last_prototypes is None:
            return self.classifier.weight.sum() * 0.0
        return spalign_loss(self._last_token, self._last_prototypes)
