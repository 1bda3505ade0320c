"""Which knowledge-base entries survive pruning and ageing: plain functions over the entry columns.

Every function takes the live columns of a base (one value per entry): ``codes`` (int source
codes), ``rounds`` (round added), ``hits`` (retrieval counts) and ``last_hit`` (round last
retrieved, -1 when never), and returns a boolean ``keep`` mask or an ordering; nothing is changed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["age_keep", "frequency_keep", "priority_order", "rank_in_source", "share_cap", "share_keep", "source_quotas"]


def priority_order(rounds: np.ndarray, hits: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """Row indices from most to least valuable: more hits, then newer round, then newer row.

    When ``first`` (a boolean mask) is given, rows where it is True come before all others.
    """
    row = np.arange(len(rounds))
    keys = [-row, -rounds, -hits]
    if first is not None:
        keys.append(~first)
    return np.lexsort(keys)


def rank_in_source(codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each row, its position within its own source along ``order`` (0 = best)."""
    n = len(codes)
    ordered = codes[order]
    by_code = np.argsort(ordered, kind="stable")
    sorted_codes = ordered[by_code]
    group_start = np.searchsorted(sorted_codes, sorted_codes, side="left")
    rank = np.empty(n, np.int64)
    rank[order[by_code]] = np.arange(n) - group_start
    return rank


def source_quotas(
    codes: np.ndarray, hits: np.ndarray, *, num_sources: int, min_per_source: int, budget: int | None
) -> np.ndarray:
    """Guaranteed entries per source code: ``min(min_per_source, count)``, fitted into ``budget``.

    When the quotas sum to more than ``budget``, the budget is split evenly (water-filling): each
    source gets ``min(quota, level)`` for the largest ``level`` that fits, so sources with fewer
    entries than the even share keep all of theirs and the others share the rest equally. The
    few slots left over (fewer than the sources still short) go one each to the sources with the
    most total hits, then the earliest seen.
    """
    counts = np.bincount(codes, minlength=num_sources)
    quota = np.minimum(counts, min_per_source)
    if budget is None or quota.sum() <= budget:
        return quota
    lo, hi = 0, int(quota.max())
    while lo < hi:  # largest level with sum(min(quota, level)) <= budget
        mid = (lo + hi + 1) // 2
        if np.minimum(quota, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    alloc = np.minimum(quota, lo)
    remaining = budget - int(alloc.sum())
    if remaining > 0:
        total_hits = np.bincount(codes, weights=hits, minlength=num_sources)
        short = np.flatnonzero(alloc < quota)
        short = short[np.lexsort((short, -total_hits[short]))]
        alloc[short[:remaining]] += 1
    return alloc


def frequency_keep(
    codes: np.ndarray,
    rounds: np.ndarray,
    hits: np.ndarray,
    *,
    num_sources: int,
    min_per_source: int,
    budget: int,
) -> np.ndarray:
    """The ``budget`` entries kept by retrieval frequency, with a per-source floor: (N,) bool.

    Entries are ranked by ``hits`` (descending); ties go to the newer round, then the newer row.
    First each source keeps its ``min(min_per_source, count)`` best-ranked entries, so a rare
    modality that is never retrieved is not erased; the remaining slots go to the best-ranked
    entries overall. If those floors alone exceed ``budget``, it is split evenly among the sources
    by water-filling (:func:`source_quotas`): each keeps ``min(floor, level)`` for the largest level
    that fits, so a source smaller than the even share keeps all its entries, and the few slots left
    by integer division go one each to the sources with the most total hits (e.g. floors 1, 8, 8
    into 9 slots keep 1, 4, 4). With fewer slots than sources, the sources with the most hits keep
    one entry each and the others are dropped.
    """
    order = priority_order(rounds, hits)
    quotas = source_quotas(codes, hits, num_sources=num_sources, min_per_source=min_per_source, budget=budget)
    reserved = rank_in_source(codes, order) < quotas[codes]
    free = budget - int(reserved.sum())
    rest = order[~reserved[order]][:free]
    keep = reserved.copy()
    keep[rest] = True
    return keep


def age_keep(
    codes: np.ndarray,
    rounds: np.ndarray,
    hits: np.ndarray,
    last_hit: np.ndarray,
    *,
    num_sources: int,
    min_per_source: int,
    max_age: int,
    current_round: int,
) -> np.ndarray:
    """The entries used in the last ``max_age`` rounds before ``current_round``, with a floor: (N,) bool.

    The last use is ``last_hit``, or the round added when never retrieved. Each source still keeps
    at least ``min(min_per_source, count)`` entries: recent ones first, then its stale ones by rank
    (hits, then recency).
    """
    last_use = np.maximum(last_hit, rounds)
    stale = current_round - last_use > max_age
    if not stale.any():
        return ~stale
    order = priority_order(rounds, hits, first=~stale)
    quotas = source_quotas(codes, hits, num_sources=num_sources, min_per_source=min_per_source, budget=None)
    protected = rank_in_source(codes, order) < quotas[codes]
    return ~stale | protected


def share_cap(*, num_sources: int, min_per_source: int, max_size: int) -> int:
    """Most entries one source may hold: ``max(min_per_source, max_size // num_sources)`` (the share bound)."""
    return max(min_per_source, max_size // max(num_sources, 1))


def share_keep(codes: np.ndarray, rounds: np.ndarray, hits: np.ndarray, *, cap: int) -> np.ndarray:
    """Each source's ``cap`` best-ranked entries (hits, then recency; :func:`priority_order`): (N,) bool."""
    return rank_in_source(codes, priority_order(rounds, hits)) < cap
