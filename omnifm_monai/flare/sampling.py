"""Partial participation: which sites take part in a round (seeded, the same on every run)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sample_participants"]


def sample_participants(num_clients: int, participation: float, round_num: int, seed: int) -> list[int]:
    """The sites taking part in a round (partial participation), deterministic per ``(seed, round_num)``.

    ``max(1, round_half_up(participation * num_clients))`` distinct sites are drawn uniformly.

    Args:
        num_clients: number of sites, >= 1.
        participation: fraction of sites per round, in (0, 1].
        round_num: the round, >= 0.
        seed: the experiment seed.

    Returns:
        Sorted site indices in ``0 .. num_clients - 1``.

    Raises:
        ValueError: when an argument is out of range.
    """
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")
    if not 0.0 < participation <= 1.0:
        raise ValueError(f"participation={participation} must be in (0, 1].")
    if round_num < 0:
        raise ValueError(f"round_num={round_num} must be >= 0.")
    k = min(num_clients, max(1, math.floor(participation * num_clients + 0.5)))
    rng = np.random.default_rng([seed, round_num])
    return sorted(int(i) for i in rng.choice(num_clients, size=k, replace=False))
