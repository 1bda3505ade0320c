"""The site's local bank of global spectral prototypes and per-sample top-k retrieval."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrototypeMemory", "class_codes"]

CLASS_CODE_SEED = 20260303
"""Seed of the class codes: every site derives the same code for the same shared class id."""


@functools.lru_cache(maxsize=1024)
def _class_code(value: int, dim: int) -> torch.Tensor:
    """The fixed unit vector (dim,) of class id ``value``: drawn once per process, not per forward pass."""
    generator = torch.Generator().manual_seed(CLASS_CODE_SEED + value)
    return F.normalize(torch.randn(dim, generator=generator), dim=0)


def class_codes(labels: torch.Tensor, dim: int) -> torch.Tensor:
    """labels (...) int64 -> one fixed unit vector per shared class id, zeros where the id is -1, (..., dim).

    The codes are drawn from a generator seeded with :data:`CLASS_CODE_SEED` and the class id, so they
    need no training and no exchange: a prototype of class c carries the same direction at every site.
    """
    codes = torch.zeros(*labels.shape, dim)
    for value in torch.unique(labels).tolist():
        if value >= 0:
            codes[labels.cpu() == value] = _class_code(int(value), dim)
    return codes.to(labels.device)


class PrototypeMemory(nn.Module):
    """Holds the prototypes the server retrieved for this site and picks the top-k per sample.

    The bank is a buffer named ``private_prototypes`` (fixed ``capacity`` rows, the first
    ``private_num_prototypes`` valid), so it is saved with the checkpoint (inference has it)
    but, being site-specific, is never aggregated nor sent. ``private_prototype_labels`` holds the
    shared class of each row (-1: unlabelled); with labelled rows (label-aware prototypes) a sample gets
    its nearest prototypes of every class, so the other sites' knowledge of each class reaches it.

    Args:
        token_dim: d_s.
        capacity: maximum number of prototypes held.
        top_k: prototypes returned per sample (with labels: ``max(1, top_k // classes)`` per class).
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
        self.register_buffer("private_prototype_labels", torch.full((capacity,), -1, dtype=torch.long))

    @property
    def num_prototypes(self) -> int:
        return int(self.private_num_prototypes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a checkpoint saved before label-aware prototypes has no labels: its rows are unlabelled
        state_dict.setdefault(prefix + "private_prototype_labels", torch.full((self.capacity,), -1, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_prototypes(self, prototypes: np.ndarray | torch.Tensor, labels: np.ndarray | None = None) -> None:
        """Replace the bank with ``prototypes`` (P, d_s) and their class ids ``labels`` (P,) (None: unlabelled);
        rows beyond ``capacity`` are dropped."""
        bank = torch.as_tensor(np.asarray(prototypes, dtype=np.float32))
        if bank.ndim != 2 or bank.shape[1] != self.token_dim:
            raise ValueError(f"prototypes must be (P, {self.token_dim}), got {tuple(bank.shape)}.")
        if not torch.isfinite(bank).all():
            raise ValueError("prototypes contain NaN or Inf.")
        ids = np.full(len(bank), -1, np.int64) if labels is None else np.asarray(labels)
        if ids.shape != (len(bank),) or (len(ids) and not np.issubdtype(ids.dtype, np.integer)) or (ids < -1).any():
            raise ValueError(f"prototype labels must be {len(bank)} class ids (-1: none), got {ids.shape} {ids.dtype}.")
        bank = F.normalize(bank[: self.capacity], dim=-1)
        self.private_prototypes.zero_()
        self.private_prototypes[: len(bank)] = bank.to(self.private_prototypes)
        self.private_prototype_labels.fill_(-1)
        self.private_prototype_labels[: len(bank)] = torch.as_tensor(ids[: self.capacity].astype(np.int64))
        self.private_num_prototypes.fill_(len(bank))

    def retrieve(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: s, (B, d_s) -> S_g, (B, K, d_s) and the class of each, (B, K) int64 (-1: unlabelled).

        Unlabelled bank: the ``top_k`` nearest. Labelled: the ``max(1, top_k // groups)`` nearest of each
        class (the unlabelled rows count as one group), so K is the same for every sample.
        """
        count = self.num_prototypes
        bank = self.private_prototypes[:count]  # (P, d_s)
        bank_labels = self.private_prototype_labels[:count]  # (P,)
        scores = tokens.detach() @ bank.t()  # (B, P), cosine: both unit norm
        if count == 0 or bool((bank_labels < 0).all()):
            index = scores.topk(min(self.top_k, count), dim=-1).indices  # (B, K)
        else:
            groups = torch.unique(bank_labels)
            per_group = max(1, self.top_k // len(groups))
            index = torch.cat(
                [
                    scores.masked_fill(bank_labels != g, -torch.inf)
                    .topk(min(per_group, int((bank_labels == g).sum())), dim=-1)
                    .indices
                    for g in groups
                ],
                dim=-1,
            )  # (B, K): each class's nearest
        return bank[index], bank_labels[index]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: s, (B, d_s) -> S_g, (B, K, d_s) (see :meth:`retrieve`)."""
        return self.retrieve(tokens)[0]
