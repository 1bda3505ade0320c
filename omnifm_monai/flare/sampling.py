"""Partial participation: which sites take part in a round (seeded, the same on every run)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["eligible_sites", "parse_late_sites", "sample_participants"]


def parse_late_sites(text: str) -> dict[str, int]:
    """``"site-4:3,site-5:4"`` -> ``{"site-4": 3, "site-5": 4}`` (a site and the first round it may train in).

    Raises:
        ValueError: an entry is not ``name:round`` with a round >= 0, or a site is named twice.
    """
    late: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        name, _, first = entry.rpartition(":")
        if not name or not first.isdigit() or name in late:
            raise ValueError(f"late site {entry!r} in {text!r}: expected distinct site:round entries, e.g. site-4:3.")
        late[name] = int(first)
    return late


def eligible_sites(sites: Sequence[str], round_num: int, late_sites: Mapping[str, int]) -> list[str]:
    """The sites that may be sampled in ``round_num``: every site but those joining in a later round.

    Args:
        sites: the job's sites, in sampling order.
        round_num: the round, >= 0.
        late_sites: site -> the first round it may train in (round R of a running job).

    Raises:
        ValueError: ``late_sites`` names a site not in ``sites``, or no site is eligible.
    """
    unknown = sorted(set(late_sites) - set(sites))
    if unknown:
        raise ValueError(f"late sites {unknown} are not among the job's sites {list(sites)}.")
    eligible = [s for s in sites if late_sites.get(s, 0) <= round_num]
    if not eligible:
        raise ValueError(f"no site may train in round {round_num}: every site joins later ({dict(late_sites)}).")
    return eligible


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
