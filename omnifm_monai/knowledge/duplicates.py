"""Near-duplicate uploads: which new tokens a knowledge base collapses instead of storing again.

A site that uploads copies of the prototypes it was sent (or the same token twice) adds nothing the
base does not hold; storing them would let it crowd out the other sites (the takeover attack of
issue 17). A new row whose cosine to a stored entry, or to an earlier row of the same upload, is at
least ``threshold`` is collapsed into that entry.
"""

from __future__ import annotations

import numpy as np

from omnifm_monai.knowledge.retrieval import topk_cosine

__all__ = ["collapse_duplicates"]


def collapse_duplicates(
    x: np.ndarray, stored: np.ndarray, *, threshold: float, chunk_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Split unit rows ``x`` (N, d) into new rows and near-duplicates of ``stored`` (M, d) or of each other.

    Args:
        x: the upload's unit rows, (N, d).
        stored: the base's unit rows, (M, d).
        threshold: cosine at or above which two rows are the same token, in (0, 1].
        chunk_size: stored rows scored at once.

    Returns:
        ``(is_new, match)``, both (N,): True where the row is stored as a new entry; for the others,
        the stored row index it duplicates, or ``-1 - j`` when it duplicates row ``j < i`` of ``x``.
    """
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
