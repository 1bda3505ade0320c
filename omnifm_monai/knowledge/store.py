"""Column storage of knowledge-base entries: vectors, source codes, class labels, rounds, hits, last retrieval."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EntryStore"]


def _live_view(column: str, doc: str) -> property:
    """A property returning a read-only view of the live rows of the column attribute ``column``."""

    def view(self: EntryStore) -> np.ndarray:
        v = getattr(self, column)[: self._n].view()
        v.flags.writeable = False
        return v

    return property(view, doc=doc)


class EntryStore:
    """Growable columns of entries, one row each; sources kept as int32 codes into a name list.

    Storage grows by doubling; rows [0, N) are live. Codes make source exclusion and per-source
    quotas vectorised. :class:`~omnifm_monai.knowledge.SpectralKnowledgeBase` adds validation,
    retrieval, pruning and persistence on top.

    Args:
        dim: width of the stored vectors.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._clear()

    def _clear(self) -> None:
        self._n = 0
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._codes = np.zeros(0, np.int32)
        self._labels = np.zeros(0, np.int64)  # the shared class an entry summarises; -1: none
        self._rounds = np.zeros(0, np.int64)
        self._hits = np.zeros(0, np.int64)
        self._last_hit = np.zeros(0, np.int64)

    # ------------------------------------------------------------------ read-only views
    def __len__(self) -> int:
        return self._n

    vectors = _live_view("_vectors", "Stored unit vectors, (N, dim) float32, read-only view.")
    labels = _live_view(
        "_labels", "Shared class id each entry summarises (-1: unlabelled), (N,) int64, read-only view."
    )
    rounds = _live_view("_rounds", "Round each entry was added, (N,) int64, read-only view.")
    hits = _live_view("_hits", "Number of times each entry was retrieved, (N,) int64, read-only view.")
    last_hit = _live_view(
        "_last_hit", "Round each entry was last retrieved (-1 when never), (N,) int64, read-only view."
    )

    @property
    def sources(self) -> np.ndarray:
        """Source id of each entry, (N,) unicode array (a new read-only array)."""
        names = np.asarray(self._names if self._names else [""], dtype=np.str_)
        out = names[self._codes[: self._n]]
        out.flags.writeable = False
        return out

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
        self._labels = grow(self._labels)
        self._rounds = grow(self._rounds)
        self._hits = grow(self._hits)
        self._last_hit = grow(self._last_hit)

    def _append(self, x: np.ndarray, names: list[str], round_num: int, labels: np.ndarray) -> np.ndarray:
        """Append unit rows x (N, dim) from sources ``names`` with class ``labels`` (N,) (one each); returns their
        int64 indices (N,)."""
        n_new = x.shape[0]
        start = self._n
        self._reserve(start + n_new)
        for name in dict.fromkeys(names):
            if name not in self._code_of:
                self._code_of[name] = len(self._names)
                self._names.append(name)
        self._vectors[start : start + n_new] = x
        self._codes[start : start + n_new] = [self._code_of[s] for s in names]
        self._labels[start : start + n_new] = labels
        self._rounds[start : start + n_new] = round_num
        self._hits[start : start + n_new] = 0
        self._last_hit[start : start + n_new] = -1
        self._n = start + n_new
        return np.arange(start, start + n_new, dtype=np.int64)

    def _append_collapsed(
        self,
        x: np.ndarray,
        names: list[str],
        round_num: int,
        labels: np.ndarray,
        is_new: np.ndarray,
        match: np.ndarray,
    ) -> np.ndarray:
        """Append the rows of x (N, dim) where ``is_new``; the others map to the entry ``match`` names
        (see :func:`~omnifm_monai.knowledge.duplicates.collapse_duplicates`). A source's own entry seen
        again gets ``round_num`` as its round. Returns the entry of every row, int64 (N,)."""
        out = np.empty(x.shape[0], np.int64)
        kept_names = [s for s, new in zip(names, is_new) if new]
        out[is_new] = self._append(x[is_new], kept_names, round_num, labels[is_new])
        for i in np.flatnonzero(~is_new):
            j = int(match[i]) if match[i] >= 0 else int(out[-1 - match[i]])
            if self._names[self._codes[j]] == names[i]:  # the source's own token again: still current
                self._rounds[j] = max(int(self._rounds[j]), round_num)
            out[i] = j
        return out

    def record_hits(self, indices: np.ndarray, round_num: int) -> None:
        """One more hit per occurrence of each index, and ``round_num`` as their last retrieval."""
        idx = np.asarray(indices, np.int64).ravel()
        if idx.size:
            np.add.at(self._hits, idx, 1)
            self._last_hit[np.unique(idx)] = round_num

    def _replace(
        self,
        vectors: np.ndarray,
        sources: list[str],
        labels: np.ndarray,
        rounds: np.ndarray,
        hits: np.ndarray,
        last_hit: np.ndarray,
    ) -> None:
        """Replace every entry with validated columns (N rows each)."""
        n = len(sources)
        names = list(dict.fromkeys(sources))
        code_of = {s: i for i, s in enumerate(names)}
        self._clear()
        self._reserve(n)
        self._vectors[:n] = vectors
        self._codes[:n] = [code_of[s] for s in sources]
        self._labels[:n] = labels
        self._rounds[:n] = rounds
        self._hits[:n] = hits
        self._last_hit[:n] = last_hit
        self._names, self._code_of, self._n = names, code_of, n

    def _compact(self, keep: np.ndarray) -> int:
        """Keep the rows where ``keep`` (N,) is True, in order; returns the number removed."""
        removed = int(self._n - keep.sum())
        if removed == 0:
            return 0
        n_keep = self._n - removed
        for name in ("_vectors", "_codes", "_labels", "_rounds", "_hits", "_last_hit"):
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

    def _columns(self) -> dict[str, Any]:
        """The live ``codes``, ``rounds`` and ``hits`` columns (views), as the pruning functions name them."""
        n = self._n
        return {"codes": self._codes[:n], "rounds": self._rounds[:n], "hits": self._hits[:n]}
