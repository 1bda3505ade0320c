"""ECA: backbone tokens attend to the retrieved global spectral prototypes."""

from __future__ import annotations

import torch
from monai.networks.blocks import CrossAttentionBlock
from torch import nn

__all__ = ["EmbeddingCrossAttention"]


class EmbeddingCrossAttention(nn.Module):
    """Embedding-level cross-attention of OmniFM.

    ``Z = r + Attention(query=LN(r), key=value=LN(S_g))``: the backbone tokens ``r`` are the
    query; the prototypes ``S_g`` (size ``token_dim``) are projected to ``hidden_size`` inside
    MONAI's :class:`~monai.networks.blocks.CrossAttentionBlock` and act as key and value.
    With no prototype (``K = 0``, e.g. before the first retrieval) it returns ``r`` unchanged.

    Args:
        hidden_size: d, width of the backbone tokens.
        token_dim: d_s, width of the spectral prototypes.
        num_heads: attention heads; must divide ``hidden_size``.
        dropout_rate: attention dropout.
    """

    def __init__(self, hidden_size: int, token_dim: int, num_heads: int = 4, dropout_rate: float = 0.0) -> None:
        super().__init__()
        if hidden_size < 1 or token_dim < 1:
            raise ValueError(f"hidden_size and token_dim must be >= 1, got {hidden_size} and {token_dim}.")
        if num_heads < 1 or hidden_size % num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size, got num_heads={num_heads}, hidden_size={hidden_size}."
            )
        self.hidden_size = hidden_size
        self.token_dim = token_dim
        self.norm_query = nn.LayerNorm(hidden_size)
        self.norm_context = nn.LayerNorm(token_dim)
        self.attention = CrossAttentionBlock(
            hidden_size=hidden_size,
            num_heads=num_heads,
            dropout_rate=dropout_rate,
            context_input_size=token_dim,
        )

    def forward(self, tokens: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            tokens: r, (B, L, d).
            prototypes: S_g, (B, K, d_s), K >= 0.

        Returns:
            Z, (B, L, d).
        """
        if tokens.ndim != 3 or tokens.shape[-1] != self.hidden_size:
            raise ValueError(f"tokens must be (B, L, {self.hidden_size}), got {tuple(tokens.shape)}.")
        if prototypes.ndim != 3 or prototypes.shape[-1] != self.token_dim or prototypes.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"prototypes must be (B={tokens.shape[0]}, K, {self.token_dim}), got {tuple(prototypes.shape)}."
            )
        if prototypes.shape[1] == 0:
            return tokens
        return tokens + self.attention(self.norm_query(tokens), self.norm_context(prototypes))
