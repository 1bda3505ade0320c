"""Which prototypes the server sends a site: its queries' neighbours from the other sites."""

from __future__ import annotations

import math

import numpy as np

from omnifm_monai.knowledge.base import SpectralKnowledgeBase
from omnifm_monai.knowledge.retrieval import pick_prototypes

__all__ = ["site_prototypes"]


def site_prototypes(
    kb: SpectralKnowledgeBase,
    queries: np.ndarray,
    *,
    site: str,
    retrieval_k: int,
    limit: int,
    round_num: int,
    balanced: bool = False,
) -> np.ndarray:
    """Top-``retrieval_k`` neighbours from other sites of each of ``site``'s queries (Q, d_s), deduplicated.

    Args:
        balanced: at most ``ceil(limit / other sources)`` rows from one source, every source's best
            neighbours first; only what is sent counts a hit. Off: the nearest, whichever site they come
            from, and every retrieved neighbour counts a hit.

    Returns:
        at most ``limit`` prototypes (P, d_s), float32.
    """
    if balanced:
        names, codes = np.unique(kb.sources, return_inverse=True)  # (S,), (N,)
        others = [str(name) for name in names if name != site]
        columns = np.full((len(queries), retrieval_k, max(len(others), 1)), -1, np.int64)  # (Q, k, S)
        for s, name in enumerate(others):
            _, index = kb.retrieve(queries, retrieval_k, only_source=name, count=False)  # (Q, k')
            columns[:, : index.shape[1], s] = index
        per_source = math.ceil(limit / max(len(others), 1))
        picked = pick_prototypes(
            columns.reshape(len(queries), -1), limit=limit, codes=codes, per_source=per_source
        )  # rank-major: every source's best neighbours first
        kb.record_hits(picked, round_num)
    else:
        _, index = kb.retrieve(queries, retrieval_k, exclude_source=site, round_num=round_num)  # (Q, k')
        picked = pick_prototypes(index, limit=limit)  # (P,)
    return kb.get(picked).astype(np.float32)
