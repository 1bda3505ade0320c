"""The site's local bank of global spectral prototypes and per-sample top-k retrieval."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrototypeMemory"]


class PrototypeMemory(nn.Module):
    """Holds the prototypes the server retrieved for this site and picks the top-k per sample.

    The bank is a buffer named ``private_prototypes`` (fixed ``capacity`` rows, the first
    ``private_num_prototypes`` valid), so it is saved with the checkpoint (inference has it)
    but, being site-specific, is never aggregated nor sent.

    Args:
        token_dim: d_s.
        capacity: maximum number of prototypes held.
        top_k: prototypes returned per sample.
    """

    def __init__(self, token_dim: int, capacity: int = 64, top_k: int = 4) -> None:
        super().__init__()
        if token_dim < 1 or capacity < 1 or top_k < 1:
            raise ValueError(f"token_dim, capacity and top_k must be >= 1, got {token_dim}, {capacity} and {top_k}.")
        self.token_dim = token_dim
        self.capacity = capacity
        self.top_k = top_k
        self.register_buffer("private_prototypes", torch.zeros(capacity, token_dim))
        self.register_buffer("private_num_prototypes", torch.zeros((), dtype=torch.long))

    @property
    def num_prototypes(self) -> int:
        return int(self.private_num_prototypes)

    @torch.no_grad()
    def set_prototypes(self, prototypes: np.ndarray | torch.Tensor) -> None:
        """Replace the bank with ``prototypes`` (P, d_s); rows beyond ``capacity`` are dropped."""
        bank = torch.as_tensor(np.asarray(prototypes, dtype=np.float32))
        if bank.ndim != 2 or bank.shape[1] != self.token_dim:
            raise ValueError(f"prototypes must be (P, {self.token_dim}), got {tuple(bank.shape)}.")
        if not torch.isfinite(bank).all():
            raise ValueError("prototypes contain NaN or Inf.")
        bank = F.normalize(bank[: self.capacity], dim=-1)
        self.private_prototypes.zero_()
        self.private_prototypes[: len(bank)] = bank.to(self.private_prototypes)
        self.private_num_prototypes.fill_(len(bank))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: s, (B, d_s) -> S_g, (B, K, d_s) with ``K = min(top_k, num_prototypes)``."""
        count = self.num_prototypes
        k = min(self.top_k, count)
        if k == 0:
            return tokens.new_zeros(tokens.shape[0], 0, self.token_dim)
        bank = self.private_prototypes[:count]  # (P, d_s)
        scores = tokens.detach() @ bank.t()  # (B, P), cosine: both unit norm
        index = scores.topk(k, dim=-1).indices  # (B, K)
        return bank[index]  # (B, K, d_s)
