"""Reading a knowledge base's saved state back: validation of every key, and the ``.npz`` file format.

The state is numpy only (see :meth:`SpectralKnowledgeBase.state_dict`): the NVFlare server persists
it with ``np.savez`` and reads it with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from omnifm_monai.knowledge.validation import MAX_LABEL, as_unit_rows

__all__ = ["CONFIG_KEYS", "DATA_KEYS", "Entries", "config_from_state", "entries_from_state", "read_npz", "write_npz"]

CONFIG_KEYS = ("dim", "max_size", "min_per_source", "max_upload", "max_age", "chunk_size")
"""The constructor arguments a state stores (``max_age`` None as -1)."""
DATA_KEYS = ("vectors", "sources", "rounds", "hits", "last_hit")
"""The per-entry columns a state must hold (``labels`` is optional: states written before it are unlabelled)."""


class Entries(NamedTuple):
    """The validated entries of a state: N rows each, and the latest round seen."""

    vectors: np.ndarray  # (N, dim) float32, unit rows
    sources: list[str]
    labels: np.ndarray  # (N,) int64, -1: unlabelled
    rounds: np.ndarray  # (N,) int64
    hits: np.ndarray  # (N,) int64
    last_hit: np.ndarray  # (N,) int64
    latest_round: int


def _check_mapping(state: Any) -> None:
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a mapping, got {type(state).__name__}.")


def entries_from_state(state: Mapping[str, Any], dim: int) -> Entries:
    """Validate the entries of ``state`` (``vectors``, ``sources``, ``rounds``, ``hits``, ``last_hit``,
    optional ``labels``, ``round`` and ``dim``) for a base of width ``dim``.

    Raises:
        ValueError: naming the bad key (missing, wrong shape or dtype, non-finite, zero-norm,
            negative counts).
    """
    _check_mapping(state)
    missing = [key for key in DATA_KEYS if key not in state]
    if missing:
        raise ValueError(f"state is missing required key(s) {missing}.")
    if "dim" in state:
        stored = np.asarray(state["dim"])
        if stored.shape != () or not np.issubdtype(stored.dtype, np.integer) or int(stored) != dim:
            raise ValueError(f"state['dim'] is {state['dim']!r}; expected {dim}.")
    vectors = as_unit_rows("state['vectors']", state["vectors"], dim, keep_tol=1e-5)
    n = vectors.shape[0]
    sources = np.asarray(state["sources"])
    if sources.shape != (n,) or (n and sources.dtype.kind != "U"):
        raise ValueError(
            f"state['sources'] has shape {sources.shape} and dtype {sources.dtype}; "
            f"expected a unicode array of shape ({n},)."
        )
    if n and (np.char.str_len(sources) == 0).any():
        raise ValueError("state['sources'] contains an empty source id.")
    ints = {"labels": np.full(n, -1, np.int64)}  # a state written before label-aware prototypes: unlabelled
    columns = (("rounds", 0), ("hits", 0), ("last_hit", -1)) + ((("labels", -1),) if "labels" in state else ())
    for key, low in columns:
        a = np.asarray(state[key])
        if a.shape != (n,) or (n and not np.issubdtype(a.dtype, np.integer)):
            raise ValueError(
                f"state['{key}'] has shape {a.shape} and dtype {a.dtype}; expected integers of shape ({n},)."
            )
        if n and (a.min() < low or a.max() > MAX_LABEL):
            raise ValueError(f"state['{key}'] has values in [{a.min()}, {a.max()}]; expected [{low}, 2**31).")
        ints[key] = a.astype(np.int64)
    latest = int(ints["rounds"].max(initial=0))
    if "round" in state:
        r = np.asarray(state["round"])
        if r.shape != () or not np.issubdtype(r.dtype, np.integer) or int(r) < 0:
            raise ValueError(f"state['round'] is {state['round']!r}; expected an integer >= 0.")
        latest = max(latest, int(r))
    return Entries(vectors, sources.tolist(), ints["labels"], ints["rounds"], ints["hits"], ints["last_hit"], latest)


def config_from_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments stored in ``state`` (:data:`CONFIG_KEYS`; ``max_age`` -1 -> None).

    Raises:
        ValueError: when a configuration key is missing or not an integer scalar.
    """
    _check_mapping(state)
    config = {}
    for key in CONFIG_KEYS:
        if key not in state:
            raise ValueError(f"state is missing required key '{key}'.")
        value = np.asarray(state[key])
        if value.shape != () or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"state['{key}'] is {state[key]!r}; expected an integer scalar.")
        config[key] = int(value)
    if config["max_age"] < 0:
        config["max_age"] = None
    # optional (states written before the share bound and duplicate collapse lack them)
    if "balance_sources" in state:
        value = np.asarray(state["balance_sources"])
        if value.shape != () or value.dtype != np.bool_:
            raise ValueError(f"state['balance_sources'] is {state['balance_sources']!r}; expected a bool scalar.")
        config["balance_sources"] = bool(value)
    if "duplicate_threshold" in state:
        value = np.asarray(state["duplicate_threshold"])
        if value.shape != () or value.dtype.kind != "f" or not (value == -1 or 0 < value <= 1):
            raise ValueError(
                f"state['duplicate_threshold'] is {state['duplicate_threshold']!r}; expected -1 or (0, 1]."
            )
        config["duplicate_threshold"] = None if value == -1 else float(value)
    return config


def write_npz(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` to ``path`` with ``np.savez`` (no pickled objects)."""
    with open(path, "wb") as f:
        np.savez(f, **state)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state written by :func:`write_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
