"""Global spectral knowledge base: the server side of GSKR (global spectral knowledge retrieval).

Clients upload L2-normalised spectral tokens (vectors of size ``d_s``) every round. The server keeps
them in a :class:`SpectralKnowledgeBase`, answers exact top-k cosine retrieval for each client's
queries, and prunes the base by retrieval frequency so that it stays compact. Unlike the paper's
plain frequency pruning, every source (site or modality) keeps a minimum number of entries, so the
prototypes of a rare modality are never erased.

Everything here is numpy only: the NVFlare server persists :meth:`SpectralKnowledgeBase.state_dict`
and sends retrieved prototypes in ``FLModel.meta``, where FOBS refuses torch tensors.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SpectralKnowledgeBase", "as_unit_rows", "topk_cosine"]

_EPS_NORM = 1e-8
_CONFIG_KEYS = ("dim", "max_size", "min_per_source", "max_upload", "max_age", "chunk_size")
_DATA_KEYS = ("vectors", "sources", "rounds", "hits", "last_hit")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _row_norms(x: np.ndarray) -> np.ndarray:
    """L2 norm of each row of a finite 2D array, computed in float64 without overflow."""
    x = x.astype(np.float64, copy=False)
    scale = np.abs(x).max(axis=1, initial=0.0)
    safe = np.where(scale > 0, scale, 1.0)
    return np.linalg.norm(x / safe[:, None], axis=1) * scale


def as_unit_rows(name: str, value: Any, dim: int, rows: str = "N", keep_tol: float = 0.0) -> np.ndarray:
    """Validate a (N, dim) array of finite, non-zero rows and return it L2-normalised as float32.

    Args:
        name: how the value is named in error messages.
        value: the array-like to check.
        dim: required number of columns.
        rows: how the number of rows is named in error messages.
        keep_tol: when every row norm is within this of 1, the values are returned as float32
            without re-normalising (keeps a stored base bit-identical through a round trip).

    Raises:
        ValueError: when ``value`` is not numeric, not (N, dim), not finite, or has a zero-norm row.
    """
    try:
        x = np.asarray(value)
    except Exception as e:  # ragged nested lists and similar
        raise ValueError(f"{name} could not be converted to an array: {e}") from e
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}.")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected ({rows}, {dim}).")
    x32 = x
    x = x.astype(np.float64, copy=False)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} must be finite; rows {bad[:5].tolist()} contain NaN or Inf ({bad.size} rows in all).")
    norms = _row_norms(x)
    zero = norms < _EPS_NORM
    if zero.any():
        bad = np.flatnonzero(zero)
        raise ValueError(
            f"{name} rows {bad[:5].tolist()} have L2 norm < {_EPS_NORM} ({bad.size} rows in all); "
            "a zero vector has no direction and cannot be normalised."
        )
    if keep_tol > 0 and (np.abs(norms - 1.0) <= keep_tol).all():
        return np.array(x32, dtype=np.float32)
    return (x / norms[:, None]).astype(np.float32)


def topk_cosine(
    queries: np.ndarray,
    keys: np.ndarray,
    k: int,
    chunk_size: int = 65536,
    *,
    exclude: np.ndarray | None = None,
    keys_normalized: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine similarity of each query against the rows of ``keys``, chunked over ``keys``.

    ``keys`` is processed ``chunk_size`` rows at a time: one matrix product ``(Q, d) @ (d, C)`` per
    chunk, merged into a running ``(Q, k)`` top-k. Once every query holds ``k`` candidates, only the
    scores above that query's current k-th best enter the merge, so most chunks cost one matrix
    product and one comparison; ``np.argpartition`` is used on the full chunk only when many scores
    pass (more than a quarter of the chunk for some query). The first block is short
    (``max(1024, 64 * k)`` rows) so that the thresholds are known early. Extra memory is about
    ``Q * chunk_size * 13`` bytes in the worst case (float32 scores, a boolean mask, int64 partition
    indices), independent of the number of keys.

    Args:
        queries: query vectors, the shape should be (Q, d). Normalised here; rows must be non-zero.
        keys: stored vectors, the shape should be (N, d).
        k: number of neighbours wanted per query (>= 0).
        chunk_size: number of key rows scored at once (>= 1).
        exclude: optional boolean mask of shape (N,); True rows are never returned.
        keys_normalized: True when the rows of ``keys`` already have unit L2 norm (skips the per-chunk
            key norms). Otherwise each chunk's scores are divided by its key norms; a zero key scores 0.

    Returns:
        ``(scores, indices)``, both of shape (Q, k') with ``k' = min(k, number of eligible keys)``:
        float32 cosine similarities in descending order and the int64 row indices into ``keys``.
        Equal scores are ordered by ascending index.

    Raises:
        ValueError: when shapes disagree or ``k``, ``chunk_size`` or ``exclude`` are invalid.
    """
    k = _check_int("k", k, 0)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    keys = np.asarray(keys)
    if keys.ndim != 2:
        raise ValueError(f"keys has shape {tuple(keys.shape)}; expected (N, d).")
    n_keys, dim = keys.shape
    q = as_unit_rows("queries", queries, dim, rows="Q")
    n_queries = q.shape[0]
    n_eligible = n_keys
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype != np.bool_ or exclude.shape != (n_keys,):
            raise ValueError(
                f"exclude must be a boolean array of shape ({n_keys},), got {exclude.dtype} {exclude.shape}."
            )
        n_eligible = n_keys - int(exclude.sum())
    k_out = min(k, n_eligible)
    if k_out == 0 or n_queries == 0:
        return np.zeros((n_queries, k_out), np.float32), np.zeros((n_queries, k_out), np.int64)

    best_s = np.full((n_queries, k_out), -np.inf, dtype=np.float32)
    best_i = np.full((n_queries, k_out), -1, dtype=np.int64)
    threshold = None  # per-query k-th best score, known once every query holds k_out candidates
    # A short first block gives every query a threshold cheaply; later blocks are mostly filtered.
    first = min(chunk_size, max(1024, 64 * k_out))
    starts = [0] + list(range(first, n_keys, chunk_size))
    for start in starts:
        stop = min(n_keys, start + (first if start == 0 else chunk_size))
        block = keys[start:stop]
        scores = q @ block.T.astype(np.float32, copy=False)  # (Q, C)
        if not keys_normalized:
            norms = _row_norms(block).astype(np.float32)
            scores /= np.where(norms > 0, norms, np.float32(1.0))[None, :]
        if exclude is not None:
            scores[:, exclude[start:stop]] = -np.inf
        n_cols = scores.shape[1]
        if threshold is not None:
            # flatnonzero of the (Q, C) mask is far faster than 2D nonzero; row-major order keeps
            # each query's candidates contiguous.
            flat = np.flatnonzero(scores > threshold[:, None])
            if flat.size == 0:
                continue
            rows, cols = np.divmod(flat, n_cols)
            counts = np.bincount(rows, minlength=n_queries)
            width = int(counts.max())
        if threshold is not None and width * 4 <= n_cols:
            # Sparse path: gather the few passing scores of each row into a (Q, width) padded block.
            pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
            cand_s = np.full((n_queries, width), -np.inf, dtype=np.float32)
            cand_i = np.full((n_queries, width), -1, dtype=np.int64)
            cand_s[rows, pos] = scores[rows, cols]
            cand_i[rows, pos] = cols + start
        else:
            # Dense path: partial sort of the whole chunk (or take it all when it is small).
            if k_out < n_cols:
                part = np.argpartition(scores, n_cols - k_out, axis=1)[:, n_cols - k_out :]  # (Q, k_out)
                cand_s = np.take_along_axis(scores, part, axis=1)
                cand_i = part.astype(np.int64) + start
            else:
                cand_s = scores
                cand_i = np.broadcast_to(np.arange(start, start + n_cols, dtype=np.int64), scores.shape)
        merged_s = np.concatenate([best_s, cand_s], axis=1)
        merged_i = np.concatenate([best_i, cand_i], axis=1)
        m = merged_s.shape[1]
        keep = np.argpartition(merged_s, m - k_out, axis=1)[:, m - k_out :]
        best_s = np.take_along_axis(merged_s, keep, axis=1)
        best_i = np.take_along_axis(merged_i, keep, axis=1)
        if np.isfinite(best_s).all():
            threshold = best_s.min(axis=1)

    order = np.lexsort((best_i, -best_s), axis=-1)  # descending score, then ascending index
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)


class SpectralKnowledgeBase:
    """Server-side store of L2-normalised spectral tokens with top-k cosine retrieval and pruning.

    Each entry has a vector, a source id (a site or modality name), the round it was added, its
    retrieval count (``hits``) and the round it was last retrieved (``last_hit``, -1 when never).
    Row indices returned by :meth:`add` and :meth:`retrieve`, and the read-only views ``vectors``,
    ``rounds``, ``hits`` and ``last_hit``, are valid until the next :meth:`add`, :meth:`prune`,
    :meth:`age` or :meth:`load_state_dict` (copy them to keep them).

    A typical server round::

        kb.add(tokens, source=site, round_num=r)                     # per client upload
        scores, idx = kb.retrieve(q, k=8, exclude_source=None, round_num=r)
        prototypes = kb.get(idx)                                     # (Q, k, dim), sent in meta
        kb.age(r); kb.prune()

    Args:
        dim: size ``d_s`` of the spectral tokens.
        max_size: number of entries :meth:`prune` keeps by default. :meth:`add` never prunes on its
            own, so the base can exceed it between prunes.
        min_per_source: each source keeps at least ``min(min_per_source, its count)`` entries through
            :meth:`prune` and :meth:`age` (0 disables the guarantee).
        max_upload: largest number of vectors one :meth:`add` call accepts.
        max_age: :meth:`age` drops entries neither retrieved nor added in the last ``max_age`` rounds;
            None disables ageing.
        chunk_size: number of stored vectors scored at once in :meth:`retrieve`.

    Raises:
        ValueError: when an argument is not an integer in its range.
    """

    def __init__(
        self,
        dim: int,
        *,
        max_size: int = 4096,
        min_per_source: int = 8,
        max_upload: int = 4096,
        max_age: int | None = None,
        chunk_size: int = 65536,
    ) -> None:
        self.dim = _check_int("dim", dim, 1)
        self.max_size = _check_int("max_size", max_size, 1)
        self.min_per_source = _check_int("min_per_source", min_per_source, 0)
        self.max_upload = _check_int("max_upload", max_upload, 1)
        self.max_age = None if max_age is None else _check_int("max_age", max_age, 0)
        self.chunk_size = _check_int("chunk_size", chunk_size, 1)
        # Storage grows by doubling; rows [0, _n) are live. Sources are stored as int32 codes into
        # _names so that exclusion and per-source quotas are vectorised.
        self._n = 0
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._codes = np.zeros(0, np.int32)
        self._rounds = np.zeros(0, np.int64)
        self._hits = np.zeros(0, np.int64)
        self._last_hit = np.zeros(0, np.int64)
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._round = 0  # latest round seen; used as last_hit when retrieve() gets no round_num

    # ------------------------------------------------------------------ read-only views
    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, size={self._n}, sources={len(self._names)}, "
            f"max_size={self.max_size}, min_per_source={self.min_per_source})"
        )

    @staticmethod
    def _view(a: np.ndarray) -> np.ndarray:
        v = a.view()
        v.flags.writeable = False
        return v

    @property
    def vectors(self) -> np.ndarray:
        """Stored unit vectors, (N, dim) float32, read-only view."""
        return self._view(self._vectors[: self._n])

    @property
    def sources(self) -> np.ndarray:
        """Source id of each entry, (N,) unicode array (a new read-only array)."""
        names = np.asarray(self._names if self._names else [""], dtype=np.str_)
        out = names[self._codes[: self._n]]
        out.flags.writeable = False
        return out

    @property
    def rounds(self) -> np.ndarray:
        """Round each entry was added, (N,) int64, read-only view."""
        return self._view(self._rounds[: self._n])

    @property
    def hits(self) -> np.ndarray:
        """Number of times each entry was retrieved, (N,) int64, read-only view."""
        return self._view(self._hits[: self._n])

    @property
    def last_hit(self) -> np.ndarray:
        """Round each entry was last retrieved (-1 when never), (N,) int64, read-only view."""
        return self._view(self._last_hit[: self._n])

    # ------------------------------------------------------------------ mutation
    def _check_round(self, name: str, value: Any) -> int:
        if not _is_int(value) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        return int(value)

    def _check_sources(self, source: str | Sequence[str], n: int) -> list[str]:
        if isinstance(source, str):
            if not source:
                raise ValueError("source must be a non-empty string, got ''.")
            return [source] * n
        if isinstance(source, np.ndarray):
            source = source.tolist() if source.ndim == 1 else source
        if not isinstance(source, Sequence) or isinstance(source, bytes):
            raise ValueError(f"source must be a string or a sequence of strings, got {type(source).__name__}.")
        if len(source) != n:
            raise ValueError(f"source has {len(source)} ids; expected one per vector ({n}).")
        for i, s in enumerate(source):
            if not isinstance(s, str) or not s:
                raise ValueError(f"source[{i}] must be a non-empty string, got {s!r}.")
        return list(source)

    def _reserve(self, n_total: int) -> None:
        cap = self._vectors.shape[0]
        if n_total <= cap:
            return
        new_cap = max(n_total, 2 * cap, 64)

        def grow(a: np.ndarray) -> np.ndarray:
            out = np.zeros((new_cap,) + a.shape[1:], a.dtype)
            out[: self._n] = a[: self._n]
            return out

        self._vectors = grow(self._vectors)
        self._codes = grow(self._codes)
        self._rounds = grow(self._rounds)
        self._hits = grow(self._hits)
        self._last_hit = grow(self._last_hit)

    def add(self, vectors: np.ndarray, source: str | Sequence[str], round_num: int) -> np.ndarray:
        """Append uploaded tokens, re-normalised to unit L2 norm.

        All arguments are validated before anything changes: on error the base is untouched.

        Args:
            vectors: tokens, the shape should be (N, dim); finite, no zero rows, N <= ``max_upload``.
            source: one non-empty source id for all rows, or one per row.
            round_num: federated round the tokens were uploaded in (>= 0).

        Returns:
            int64 indices of the new rows, shape (N,).

        Raises:
            ValueError: on a bad shape, NaN/Inf, a zero-norm row, an oversized upload, bad source ids
                or a bad round number.
        """
        x = as_unit_rows("vectors", vectors, self.dim)
        if x.shape[0] > self.max_upload:
            raise ValueError(f"vectors has {x.shape[0]} rows; at most max_upload={self.max_upload} per call.")
        names = self._check_sources(source, x.shape[0])
        round_num = self._check_round("round_num", round_num)

        n_new = x.shape[0]
        start = self._n
        self._reserve(start + n_new)
        for name in dict.fromkeys(names):
            if name not in self._code_of:
                self._code_of[name] = len(self._names)
                self._names.append(name)
        self._vectors[start : start + n_new] = x
        self._codes[start : start + n_new] = [self._code_of[s] for s in names]
        self._rounds[start : start + n_new] = round_num
        self._hits[start : start + n_new] = 0
        self._last_hit[start : start + n_new] = -1
        self._n = start + n_new
        self._round = max(self._round, round_num)
        return np.arange(start, start + n_new, dtype=np.int64)

    def retrieve(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude_source: str | None = None,
        count: bool = True,
        round_num: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k cosine retrieval of stored tokens for each query (see :func:`topk_cosine`).

        Args:
            queries: query tokens, the shape should be (Q, dim); normalised here, rows must be non-zero.
            k: neighbours per query (>= 0).
            exclude_source: entries from this source are not eligible (e.g. a client's own uploads);
                a source with no entry in the base excludes nothing.
            count: when True, each returned index gets one more hit (per occurrence) and its
                ``last_hit`` is set to ``round_num``.
            round_num: round of this retrieval (>= 0); None uses the latest round seen so far.

        Returns:
            ``(scores, indices)`` of shape (Q, k'), ``k' = min(k, eligible entries)``: float32
            cosine similarities in descending order and int64 row indices.

        Raises:
            ValueError: on bad queries, ``k``, ``exclude_source`` or ``round_num``; the base is unchanged.
        """
        k = _check_int("k", k, 0)
        if round_num is not None:
            round_num = self._check_round("round_num", round_num)
        if exclude_source is not None and (not isinstance(exclude_source, str) or not exclude_source):
            raise ValueError(f"exclude_source must be a non-empty string or None, got {exclude_source!r}.")
        exclude = None
        code = self._code_of.get(exclude_source) if exclude_source is not None else None
        if code is not None:
            exclude = self._codes[: self._n] == code
        scores, idx = topk_cosine(
            queries, self._vectors[: self._n], k, self.chunk_size, exclude=exclude, keys_normalized=True
        )
        if count and idx.size:
            when = self._round if round_num is None else round_num
            np.add.at(self._hits, idx.ravel(), 1)
            self._last_hit[np.unique(idx)] = when
        if round_num is not None:
            self._round = max(self._round, round_num)
        return scores, idx

    def get(self, indices: Any) -> np.ndarray:
        """Stored vectors for ``indices`` of any shape, returned as a (..., dim) float32 copy.

        Raises:
            ValueError: when an index is not an integer in [0, len(self)).
        """
        idx = np.asarray(indices)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}.")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise ValueError(f"indices must lie in [0, {self._n}), got values in [{idx.min()}, {idx.max()}].")
        return self._vectors[: self._n][idx]

    # ------------------------------------------------------------------ pruning
    def _priority_order(self, first: np.ndarray | None = None) -> np.ndarray:
        """Row indices from most to least valuable: more hits, then newer round, then newer row.

        When ``first`` (a boolean mask) is given, rows where it is True come before all others.
        """
        n = self._n
        row = np.arange(n)
        keys = [-row, -self._rounds[:n], -self._hits[:n]]
        if first is not None:
            keys.append(~first)
        return np.lexsort(keys)

    def _rank_in_source(self, order: np.ndarray) -> np.ndarray:
        """For each row, its position within its own source along ``order`` (0 = best)."""
        codes = self._codes[: self._n][order]
        by_code = np.argsort(codes, kind="stable")
        sorted_codes = codes[by_code]
        group_start = np.searchsorted(sorted_codes, sorted_codes, side="left")
        rank = np.empty(self._n, np.int64)
        rank[order[by_code]] = np.arange(self._n) - group_start
        return rank

    def _quotas(self, budget: int | None) -> np.ndarray:
        """Guaranteed entries per source code: ``min(min_per_source, count)``, fitted into ``budget``.

        When the quotas sum to more than ``budget``, the budget is split evenly (water-filling): each
        source gets ``min(quota, level)`` for the largest ``level`` that fits, so sources with fewer
        entries than the even share keep all of theirs and the others share the rest equally. The
        few slots left over (fewer than the sources still short) go one each to the sources with the
        most total hits, then the earliest seen.
        """
        n_codes = len(self._names)
        counts = np.bincount(self._codes[: self._n], minlength=n_codes)
        quota = np.minimum(counts, self.min_per_source)
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
            total_hits = np.bincount(self._codes[: self._n], weights=self._hits[: self._n], minlength=n_codes)
            short = np.flatnonzero(alloc < quota)
            short = short[np.lexsort((short, -total_hits[short]))]
            alloc[short[:remaining]] += 1
        return alloc

    def _compact(self, keep: np.ndarray) -> int:
        removed = int(self._n - keep.sum())
        if removed == 0:
            return 0
        n_keep = self._n - removed
        for name in ("_vectors", "_codes", "_rounds", "_hits", "_last_hit"):
            a = getattr(self, name)
            a[:n_keep] = a[: self._n][keep]
        self._n = n_keep
        # Drop source names with no entry left, renumbering codes.
        used = np.zeros(len(self._names), bool)
        used[self._codes[:n_keep]] = True
        if not used.all():
            remap = np.cumsum(used) - 1
            self._codes[:n_keep] = remap[self._codes[:n_keep]]
            self._names = [s for s, u in zip(self._names, used) if u]
            self._code_of = {s: i for i, s in enumerate(self._names)}
        return removed

    def prune(self, *, max_size: int | None = None) -> int:
        """Keep at most ``max_size`` entries, ranked by retrieval frequency, with a per-source floor.

        Entries are ranked by ``hits`` (descending); ties go to the newer round, then the newer row.
        First each source keeps its ``min(min_per_source, count)`` best-ranked entries, so a rare
        modality that is never retrieved is not erased; the remaining slots go to the best-ranked
        entries overall. If those floors alone exceed ``max_size``, ``max_size`` is split evenly
        among the sources by water-filling: each keeps ``min(floor, level)`` for the largest level
        that fits, so a source smaller than the even share keeps all its entries, and the few slots
        left by integer division go one each to the sources with the most total hits (e.g. floors
        1, 8, 8 into 9 slots keep 1, 4, 4). With fewer slots than sources, the sources with the most
        hits keep one entry each and the others are dropped.

        Args:
            max_size: entries to keep (>= 1); defaults to ``self.max_size``.

        Returns:
            the number of entries removed.

        Raises:
            ValueError: when ``max_size`` is not an integer >= 1.
        """
        budget = self.max_size if max_size is None else _check_int("max_size", max_size, 1)
        if self._n <= budget:
            return 0
        order = self._priority_order()
        reserved = self._rank_in_source(order) < self._quotas(budget)[self._codes[: self._n]]
        free = budget - int(reserved.sum())
        rest = order[~reserved[order]][:free]
        keep = reserved.copy()
        keep[rest] = True
        return self._compact(keep)

    def age(self, current_round: int) -> int:
        """Drop entries whose last use is more than ``max_age`` rounds before ``current_round``.

        The last use is ``last_hit``, or the round added when never retrieved. Each source still
        keeps at least ``min(min_per_source, count)`` entries: recent ones first, then its stale ones
        by rank (hits, then recency). No-op when ``max_age`` is None.

        Returns:
            the number of entries removed.

        Raises:
            ValueError: when ``current_round`` is not an integer >= 0.
        """
        current_round = self._check_round("current_round", current_round)
        self._round = max(self._round, current_round)
        if self.max_age is None or self._n == 0:
            return 0
        last_use = np.maximum(self._last_hit[: self._n], self._rounds[: self._n])
        stale = current_round - last_use > self.max_age
        if not stale.any():
            return 0
        order = self._priority_order(first=~stale)
        protected = self._rank_in_source(order) < self._quotas(None)[self._codes[: self._n]]
        return self._compact(~stale | protected)

    # ------------------------------------------------------------------ persistence
    def summary(self) -> dict[str, Any]:
        """Plain-Python summary for logs: size, per-source counts and hits, total hits."""
        n = self._n
        counts = np.bincount(self._codes[:n], minlength=len(self._names))
        hits = np.bincount(self._codes[:n], weights=self._hits[:n], minlength=len(self._names))
        return {
            "size": n,
            "dim": self.dim,
            "max_size": self.max_size,
            "num_sources": len(self._names),
            "per_source": {s: int(c) for s, c in zip(self._names, counts)},
            "hits_per_source": {s: int(h) for s, h in zip(self._names, hits)},
            "total_hits": int(self._hits[:n].sum()),
            "latest_round": self._round,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Numpy-only copy of the contents and configuration (``max_age`` None is stored as -1)."""
        n = self._n
        return {
            "vectors": self._vectors[:n].copy(),
            "sources": np.asarray(self.sources, dtype=np.str_).copy().reshape(n),
            "rounds": self._rounds[:n].copy(),
            "hits": self._hits[:n].copy(),
            "last_hit": self._last_hit[:n].copy(),
            "round": np.asarray(self._round, np.int64),
            "dim": np.asarray(self.dim, np.int64),
            "max_size": np.asarray(self.max_size, np.int64),
            "min_per_source": np.asarray(self.min_per_source, np.int64),
            "max_upload": np.asarray(self.max_upload, np.int64),
            "max_age": np.asarray(-1 if self.max_age is None else self.max_age, np.int64),
            "chunk_size": np.asarray(self.chunk_size, np.int64),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with ``state`` (from :meth:`state_dict`), after validating all of it.

        The entries (``vectors``, ``sources``, ``rounds``, ``hits``, ``last_hit``, ``round``) are
        loaded; the stored configuration must match ``dim`` and is otherwise ignored, so this
        instance keeps its own pruning policy (use :meth:`from_state_dict` to restore it as well).

        Raises:
            ValueError: naming the bad key (missing, wrong shape or dtype, non-finite, zero-norm,
                negative counts); the base is unchanged on error.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping, got {type(state).__name__}.")
        missing = [key for key in _DATA_KEYS if key not in state]
        if missing:
            raise ValueError(f"state is missing required key(s) {missing}.")
        if "dim" in state:
            dim = np.asarray(state["dim"])
            if dim.shape != () or not np.issubdtype(dim.dtype, np.integer) or int(dim) != self.dim:
                raise ValueError(f"state['dim'] is {state['dim']!r}; expected {self.dim}.")
        vectors = as_unit_rows("state['vectors']", state["vectors"], self.dim, keep_tol=1e-5)
        n = vectors.shape[0]
        sources = np.asarray(state["sources"])
        if sources.shape != (n,) or (n and sources.dtype.kind != "U"):
            raise ValueError(
                f"state['sources'] has shape {sources.shape} and dtype {sources.dtype}; "
                f"expected a unicode array of shape ({n},)."
            )
        if n and (np.char.str_len(sources) == 0).any():
            raise ValueError("state['sources'] contains an empty source id.")
        ints = {}
        for key, low in (("rounds", 0), ("hits", 0), ("last_hit", -1)):
            a = np.asarray(state[key])
            if a.shape != (n,) or (n and not np.issubdtype(a.dtype, np.integer)):
                raise ValueError(
                    f"state['{key}'] has shape {a.shape} and dtype {a.dtype}; expected integers of shape ({n},)."
                )
            if n and a.min() < low:
                raise ValueError(f"state['{key}'] has value {a.min()}; expected >= {low}.")
            ints[key] = a.astype(np.int64)
        latest = int(ints["rounds"].max(initial=0))
        if "round" in state:
            r = np.asarray(state["round"])
            if r.shape != () or not np.issubdtype(r.dtype, np.integer) or int(r) < 0:
                raise ValueError(f"state['round'] is {state['round']!r}; expected an integer >= 0.")
            latest = max(latest, int(r))

        names = list(dict.fromkeys(sources.tolist()))
        code_of = {s: i for i, s in enumerate(names)}
        self._n = 0
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._codes = np.zeros(0, np.int32)
        self._rounds = np.zeros(0, np.int64)
        self._hits = np.zeros(0, np.int64)
        self._last_hit = np.zeros(0, np.int64)
        self._reserve(n)
        self._vectors[:n] = vectors
        self._codes[:n] = [code_of[s] for s in sources.tolist()]
        self._rounds[:n] = ints["rounds"]
        self._hits[:n] = ints["hits"]
        self._last_hit[:n] = ints["last_hit"]
        self._names, self._code_of, self._n, self._round = names, code_of, n, latest

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> SpectralKnowledgeBase:
        """Build a base with the configuration stored in ``state`` and load its entries.

        Raises:
            ValueError: when a configuration key is missing or invalid, or the entries are invalid.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping, got {type(state).__name__}.")
        config = {}
        for key in _CONFIG_KEYS:
            if key not in state:
                raise ValueError(f"state is missing required key '{key}'.")
            value = np.asarray(state[key])
            if value.shape != () or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"state['{key}'] is {state[key]!r}; expected an integer scalar.")
            config[key] = int(value)
        if config["max_age"] < 0:
            config["max_age"] = None
        kb = cls(config.pop("dim"), **config)
        kb.load_state_dict(state)
        return kb

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` with ``np.savez`` (no pickled objects)."""
        with open(path, "wb") as f:
            np.savez(f, **self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpectralKnowledgeBase:
        """Read a base written by :meth:`save` (``allow_pickle=False``), configuration included."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_state_dict({key: data[key] for key in data.files})
