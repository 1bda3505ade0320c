"""Exact top-k cosine retrieval over a large array of stored vectors, chunked (numpy only)."""

from __future__ import annotations

import numpy as np

from omnifm_monai.knowledge.validation import as_unit_rows, check_int, row_norms

__all__ = ["pick_prototypes", "topk_cosine"]


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
    k = check_int("k", k, 0)
    chunk_size = check_int("chunk_size", chunk_size, 1)
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
            norms = row_norms(block).astype(np.float32)
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


def pick_prototypes(
    index: np.ndarray, *, limit: int, codes: np.ndarray | None = None, per_source: int | None = None
) -> np.ndarray:
    """The distinct entries a site is sent, from the top-k ``index`` (Q, k) of its queries: (P,) int64.

    Ranks are interleaved (every query's best neighbour first, then every second best, ...), so each
    query keeps its best neighbours when ``limit`` cuts the list; -1 (padding) is skipped. With
    ``per_source``, at most that many entries come from one source (``codes`` (N,): each entry's
    source code), so no site's entries fill another site's prototypes.
    """
    order = [row for row in dict.fromkeys(np.asarray(index).T.reshape(-1).tolist()) if row >= 0]
    if per_source is None or codes is None:
        return np.asarray(order[:limit], np.int64)
    taken: dict[int, int] = {}
    picked = []
    for row in order:
        code = int(codes[row])
        if taken.get(code, 0) < per_source:
            taken[code] = taken.get(code, 0) + 1
            picked.append(row)
            if len(picked) == limit:
                break
    return np.asarray(picked, np.int64)
