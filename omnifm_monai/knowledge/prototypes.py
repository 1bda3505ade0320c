"""Which prototypes the server sends a site: its queries' neighbours from the other sites, or, before its
first upload (a site joining late, or sampled for the first time), the newest entries of every other source.

Both return knowledge-base rows; the server sends their vectors (``kb.get``) and, for label-aware
prototypes, their class ids (``kb.labels``)."""

from __future__ import annotations

import math

import numpy as np

from omnifm_monai.knowledge.base import SpectralKnowledgeBase
from omnifm_monai.knowledge.retrieval import pick_prototypes

__all__ = ["first_contact_rows", "site_prototype_rows"]


def site_prototype_rows(
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
        the rows of at most ``limit`` prototypes, (P,) int64.
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
    return picked


def first_contact_rows(kb: SpectralKnowledgeBase, *, site: str, limit: int) -> np.ndarray:
    """Rows for a site with no query yet: the other sources' newest entries, taken in turn from each
    source (newest first) so that every source is represented, at most ``limit``, (P,) int64.

    Nothing is retrieved, so no entry counts a hit.
    """
    sources, rounds = kb.sources, np.asarray(kb.rounds)  # (N,), (N,)
    per_source = []  # each other source's rows, newest first
    for name in sorted(set(sources.tolist()) - {site}):
        rows = np.flatnonzero(sources == name)  # (n_s,)
        per_source.append(rows[np.argsort(-rounds[rows], kind="stable")])
    ranked = np.full((len(per_source), max(map(len, per_source), default=0)), -1, np.int64)  # (S, L), -1: padding
    for s, rows in enumerate(per_source):
        ranked[s, : len(rows)] = rows
    return pick_prototypes(ranked, limit=limit)  # (P,), ranks interleaved
