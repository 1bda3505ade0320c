"""Global spectral knowledge base: the server side of GSKR (global spectral knowledge retrieval).

Clients upload L2-normalised spectral tokens (vectors of size ``d_s``) every round. The server keeps
them in a :class:`SpectralKnowledgeBase`, answers exact top-k cosine retrieval for each client's
queries (:mod:`~omnifm_monai.knowledge.retrieval`), and prunes the base by retrieval frequency so that
it stays compact (:mod:`~omnifm_monai.knowledge.pruning`). Unlike the paper's plain frequency pruning,
every source (site or modality) keeps a minimum number of entries, so the prototypes of a rare
modality are never erased.

Everything here is numpy only: the NVFlare server persists :meth:`SpectralKnowledgeBase.state_dict`
(:mod:`~omnifm_monai.knowledge.persistence`) and sends retrieved prototypes in ``FLModel.meta``, where
FOBS refuses torch tensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from omnifm_monai.knowledge.duplicates import collapse_duplicates
from omnifm_monai.knowledge.persistence import config_from_state, entries_from_state, read_npz, write_npz
from omnifm_monai.knowledge.pruning import age_keep, frequency_keep, share_cap, share_keep
from omnifm_monai.knowledge.retrieval import topk_cosine
from omnifm_monai.knowledge.store import EntryStore
from omnifm_monai.knowledge.validation import as_unit_tokens, check_int, check_labels, check_sources

__all__ = ["SpectralKnowledgeBase"]


class SpectralKnowledgeBase(EntryStore):
    """Server-side store of L2-normalised spectral tokens with top-k cosine retrieval and pruning.

    Each entry has a vector, a source id (a site or modality name), the shared class it summarises
    (``labels``, -1 when the site sent none), the round it was added, its retrieval count (``hits``) and the
    round it was last retrieved (``last_hit``, -1 when never).
    Row indices returned by :meth:`add` and :meth:`retrieve`, and the read-only views ``vectors``,
    ``labels``, ``rounds``, ``hits`` and ``last_hit``, are valid until the next :meth:`add`, :meth:`prune`,
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
        balance_sources: :meth:`prune` first cuts every source to its share,
            ``max(min_per_source, max_size // sources)`` entries (:func:`~.pruning.share_cap`), so one
            site cannot take the base over.
        duplicate_threshold: :meth:`add` collapses a row whose cosine to a stored entry (or an earlier
            row of the upload) of the same class is at least this (:mod:`~omnifm_monai.knowledge.duplicates`);
            a duplicate of the same source's entry refreshes that entry's round. None: never.

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
        balance_sources: bool = False,
        duplicate_threshold: float | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.max_size = check_int("max_size", max_size, 1)
        self.min_per_source = check_int("min_per_source", min_per_source, 0)
        self.max_upload = check_int("max_upload", max_upload, 1)
        self.max_age = None if max_age is None else check_int("max_age", max_age, 0)
        self.chunk_size = check_int("chunk_size", chunk_size, 1)
        if not isinstance(balance_sources, (bool, np.bool_)):
            raise ValueError(f"balance_sources must be a bool, got {balance_sources!r}.")
        self.balance_sources = bool(balance_sources)
        if duplicate_threshold is not None and not (
            isinstance(duplicate_threshold, (int, float)) and 0 < duplicate_threshold <= 1
        ):
            raise ValueError(f"duplicate_threshold must be in (0, 1] or None, got {duplicate_threshold!r}.")
        self.duplicate_threshold = None if duplicate_threshold is None else float(duplicate_threshold)
        super().__init__(self.dim)
        self._round = 0  # latest round seen; used as last_hit when retrieve() gets no round_num

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, size={self._n}, sources={len(self._names)}, "
            f"max_size={self.max_size}, min_per_source={self.min_per_source})"
        )

    # ------------------------------------------------------------------ mutation
    def add(self, vectors: np.ndarray, source: str | Sequence[str], round_num: int, labels: Any = None) -> np.ndarray:
        """Append uploaded tokens, re-normalised to unit L2 norm.

        All arguments are validated before anything changes: on error the base is untouched.

        Args:
            vectors: tokens, the shape should be (N, dim); finite, no zero rows, N <= ``max_upload``.
            source: one non-empty source id for all rows, or one per row.
            round_num: federated round the tokens were uploaded in (>= 0).
            labels: the shared class id each row summarises, (N,) integers >= 0 (label-aware prototypes);
                None: unlabelled (-1).

        Returns:
            int64 indices of the rows holding the upload, shape (N,): new rows, or for a collapsed
            near-duplicate the entry it was collapsed into.

        Raises:
            ValueError: on a bad shape, NaN/Inf, a zero-norm row, an oversized upload, bad source ids,
                bad labels or a bad round number.
        """
        x = as_unit_tokens(vectors, self.dim, max_rows=self.max_upload, limit=f"max_upload={self.max_upload}")
        names = check_sources(source, x.shape[0])
        labels = check_labels("labels", labels, x.shape[0])  # (N,)
        round_num = check_int("round_num", round_num, 0)

        self._round = max(self._round, round_num)
        if self.duplicate_threshold is None:
            return self._append(x, names, round_num, labels)
        is_new, match = collapse_duplicates(
            x,
            self._vectors[: self._n],
            threshold=self.duplicate_threshold,
            chunk_size=self.chunk_size,
            labels=labels,
            stored_labels=self._labels[: self._n],
        )  # (N,), (N,)
        return self._append_collapsed(x, names, round_num, labels, is_new, match)

    def retrieve(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude_source: str | None = None,
        only_source: str | None = None,
        count: bool = True,
        round_num: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k cosine retrieval of stored tokens for each query (see :func:`topk_cosine`).

        Args:
            queries: query tokens, the shape should be (Q, dim); normalised here, rows must be non-zero.
            k: neighbours per query (>= 0).
            exclude_source: entries from this source are not eligible (e.g. a client's own uploads);
                a source with no entry in the base excludes nothing.
            only_source: only this source's entries are eligible (none when it has no entry).
            count: when True, each returned index gets one more hit (per occurrence) and its
                ``last_hit`` is set to ``round_num``.
            round_num: round of this retrieval (>= 0); None uses the latest round seen so far.

        Returns:
            ``(scores, indices)`` of shape (Q, k'), ``k' = min(k, eligible entries)``: float32
            cosine similarities in descending order and int64 row indices.

        Raises:
            ValueError: on bad queries, ``k``, ``exclude_source`` or ``round_num``; the base is unchanged.
        """
        k = check_int("k", k, 0)
        if round_num is not None:
            round_num = check_int("round_num", round_num, 0)
        for name, value in (("exclude_source", exclude_source), ("only_source", only_source)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}.")
        exclude = None
        code = self._code_of.get(exclude_source) if exclude_source is not None else None
        if code is not None:
            exclude = self._codes[: self._n] == code
        if only_source is not None:
            others = self._codes[: self._n] != self._code_of.get(only_source, -1)
            exclude = others if exclude is None else exclude | others
        scores, idx = topk_cosine(
            queries, self._vectors[: self._n], k, self.chunk_size, exclude=exclude, keys_normalized=True
        )
        if count:
            self.record_hits(idx, self._round if round_num is None else round_num)
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
    def prune(self, *, max_size: int | None = None) -> int:
        """Keep at most ``max_size`` entries, ranked by retrieval frequency, with a per-source floor.

        Each source keeps its ``min(min_per_source, count)`` most retrieved entries, so a rare
        modality that is never retrieved is not erased; the other slots go to the most retrieved
        entries overall (the policy in full: :func:`~omnifm_monai.knowledge.pruning.frequency_keep`).

        Args:
            max_size: entries to keep (>= 1); defaults to ``self.max_size``.

        Returns:
            the number of entries removed.

        Raises:
            ValueError: when ``max_size`` is not an integer >= 1.
        """
        budget = self.max_size if max_size is None else check_int("max_size", max_size, 1)
        removed = 0
        if self.balance_sources and self._n:
            cap = share_cap(num_sources=len(self._names), min_per_source=self.min_per_source, max_size=budget)
            removed = self._compact(share_keep(**self._columns(), cap=cap))
        if self._n <= budget:
            return removed
        keep = frequency_keep(
            **self._columns(), num_sources=len(self._names), min_per_source=self.min_per_source, budget=budget
        )
        return removed + self._compact(keep)

    def age(self, current_round: int) -> int:
        """Drop entries whose last use is more than ``max_age`` rounds before ``current_round``.

        Each source still keeps at least ``min(min_per_source, count)`` entries
        (:func:`~omnifm_monai.knowledge.pruning.age_keep`). No-op when ``max_age`` is None.

        Returns:
            the number of entries removed.

        Raises:
            ValueError: when ``current_round`` is not an integer >= 0.
        """
        current_round = check_int("current_round", current_round, 0)
        self._round = max(self._round, current_round)
        if self.max_age is None or self._n == 0:
            return 0
        keep = age_keep(
            **self._columns(),
            last_hit=self._last_hit[: self._n],
            num_sources=len(self._names),
            min_per_source=self.min_per_source,
            max_age=self.max_age,
            current_round=current_round,
        )
        return self._compact(keep)

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
            "labels": self._labels[:n].copy(),
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
            "balance_sources": np.asarray(self.balance_sources),
            "duplicate_threshold": np.asarray(-1.0 if self.duplicate_threshold is None else self.duplicate_threshold),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with ``state`` (from :meth:`state_dict`), after validating all of it.

        The entries (``vectors``, ``sources``, ``labels``, ``rounds``, ``hits``, ``last_hit``, ``round``) are
        loaded (a state without ``labels``, written before label-aware prototypes, loads as unlabelled); the
        stored configuration must match ``dim`` and is otherwise ignored, so this
        instance keeps its own pruning policy (use :meth:`from_state_dict` to restore it as well).

        Raises:
            ValueError: naming the bad key (missing, wrong shape or dtype, non-finite, zero-norm,
                negative counts); the base is unchanged on error.
        """
        entries = entries_from_state(state, self.dim)
        self._replace(entries.vectors, entries.sources, entries.labels, entries.rounds, entries.hits, entries.last_hit)
        self._round = entries.latest_round

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> SpectralKnowledgeBase:
        """Build a base with the configuration stored in ``state`` and load its entries.

        Raises:
            ValueError: when a configuration key is missing or invalid, or the entries are invalid.
        """
        config = config_from_state(state)
        kb = cls(config.pop("dim"), **config)
        kb.load_state_dict(state)
        return kb

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` with ``np.savez`` (no pickled objects)."""
        write_npz(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpectralKnowledgeBase:
        """Read a base written by :meth:`save` (``allow_pickle=False``), configuration included."""
        return cls.from_state_dict(read_npz(path))
