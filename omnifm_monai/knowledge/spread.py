"""How far apart the sites' spectral uploads are: the check that retrieval has anything to choose between.

A trained, shared tokenizer can map every site's images onto one direction (token collapse): the knowledge
base then holds copies of one vector, every site retrieves the same prototypes, and ECA sees a constant.
The server records both cosines below every round (``token_cosine`` in the round history).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["token_cosines"]


def token_cosines(uploads: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """Mean cosines of the sites' unit centroids ``{site: (K, d_s)}``.

    Returns:
        ``within_site``: mean cosine between two centroids of one site (its classes or clusters), over the
        sites with two or more; ``between_sites``: mean cosine between two sites' mean directions. None
        where there is no pair (the round history is strict JSON). Both near 1: the tokens no longer tell
        sites (modalities) or classes apart.
    """
    within, means = [], []
    for rows in uploads.values():
        rows = np.asarray(rows, np.float64)  # (K, d_s), unit rows
        if len(rows) >= 2:
            gram = rows @ rows.T  # (K, K)
            within.append(gram[np.triu_indices(len(rows), 1)].mean())
        if len(rows):
            mean = rows.mean(axis=0)
            means.append(mean / max(np.linalg.norm(mean), 1e-12))
    between = None
    if len(means) >= 2:
        gram = np.stack(means) @ np.stack(means).T  # (S, S)
        between = float(gram[np.triu_indices(len(means), 1)].mean())
    return {"within_site": float(np.mean(within)) if within else None, "between_sites": between}
