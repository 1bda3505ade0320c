"""Near-duplicate uploads: which new tokens a knowledge base collapses instead of storing again.

A site that uploads copies of the prototypes it was sent (or the same token twice) adds nothing the
base does not hold; storing them would let it crowd out the other sites (the takeover attack of
issue 17). A new row whose cosine to a stored entry, or to an earlier row of the same upload, is at
least ``threshold`` is collapsed into that entry. Entries that summarise different classes (label-aware
prototypes) are never duplicates of each other, however close their tokens.
"""

from __future__ import annotations

import numpy as np

from omnifm_monai.knowledge.retrieval import topk_cosine

__all__ = ["collapse_duplicates"]


def collapse_duplicates(
    x: np.ndarray,
    stored: np.ndarray,
    *,
    threshold: float,
    chunk_size: int = 65536,
    labels: np.ndarray | None = None,
    stored_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split unit rows ``x`` (N, d) into new rows and near-duplicates of ``stored`` (M, d) or of each other.

    Args:
        x: the upload's unit rows, (N, d).
        stored: the base's unit rows, (M, d).
        threshold: cosine at or above which two rows are the same token, in (0, 1].
        chunk_size: stored rows scored at once.
        labels, stored_labels: the class id of each row of ``x`` (N,) and of ``stored`` (M,); given,
            only rows of the same class can be duplicates.

    Returns:
        ``(is_new, match)``, both (N,): True where the row is stored as a new entry; for the others,
        the stored row index it duplicates, or ``-1 - j`` when it duplicates row ``j < i`` of ``x``.
    """
    if labels is None:
        return _collapse(x, stored, threshold, chunk_size)
    is_new = np.ones(x.shape[0], bool)
    match = np.full(x.shape[0], -1, np.int64)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)  # (n_c,) ascending: an earlier row stays earlier
        stored_rows = np.flatnonzero(stored_labels == value)  # (m_c,)
        new, found = _collapse(x[rows], stored[stored_rows], threshold, chunk_size)
        is_new[rows] = new
        of_stored, of_upload = ~new & (found >= 0), ~new & (found < 0)
        match[rows[of_stored]] = stored_rows[found[of_stored]]
        match[rows[of_upload]] = -1 - rows[-1 - found[of_upload]]
    return is_new, match


def _collapse(x: np.ndarray, stored: np.ndarray, threshold: float, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`collapse_duplicates` without labels."""
    n = x.shape[0]
    is_new = np.ones(n, bool)
    match = np.full(n, -1, np.int64)
    if n == 0:
        return is_new, match
    if stored.shape[0]:
        scores, idx = topk_cosine(x, stored, 1, chunk_size, keys_normalized=True)  # (N, 1)
        dup = scores[:, 0] >= threshold
        is_new[dup] = False
        match[dup] = idx[dup, 0]
    within = x @ x.T  # (N, N): cosine of unit rows
    for i in range(1, n):
        if is_new[i]:
            earlier = np.flatnonzero(is_new[:i] & (within[i, :i] >= threshold))
            if earlier.size:
                is_new[i] = False
                match[i] = -1 - int(earlier[0])
    return is_new, match
