"""Validation shared by the knowledge base and the server's upload checks: the one place spectral
tokens (and every other array of unit rows: queries, a stored base) are checked and normalised."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_LABEL",
    "as_unit_rows",
    "as_unit_tokens",
    "check_int",
    "check_labels",
    "check_sources",
    "is_int",
    "row_norms",
]

EPS_NORM = 1e-8
"""Rows with a smaller L2 norm have no direction and are refused."""


def is_int(value: Any) -> bool:
    """True for an integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; ValueError naming ``name`` unless it is an integer >= ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def row_norms(x: np.ndarray) -> np.ndarray:
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
    norms = row_norms(x)
    zero = norms < EPS_NORM
    if zero.any():
        bad = np.flatnonzero(zero)
        raise ValueError(
            f"{name} rows {bad[:5].tolist()} have L2 norm < {EPS_NORM} ({bad.size} rows in all); "
            "a zero vector has no direction and cannot be normalised."
        )
    if keep_tol > 0 and (np.abs(norms - 1.0) <= keep_tol).all():
        return np.array(x32, dtype=np.float32)
    return (x / norms[:, None]).astype(np.float32)


def as_unit_tokens(value: Any, dim: int, *, max_rows: int, name: str = "vectors", limit: str = "") -> np.ndarray:
    """The check of an upload of spectral tokens (N, dim): at most ``max_rows`` rows, then :func:`as_unit_rows`.

    The row count is checked first, before anything is converted (a token flood costs nothing).

    Args:
        value: the uploaded array-like.
        dim: d_s, the required number of columns.
        max_rows: the largest accepted N.
        name: how the tokens are named in error messages.
        limit: how the limit is named in error messages (default: its value).

    Raises:
        ValueError: more than ``max_rows`` rows, or anything :func:`as_unit_rows` refuses.
    """
    try:
        count = len(value)
    except TypeError:  # a scalar: as_unit_rows names its shape
        count = 0
    if count > max_rows:
        raise ValueError(f"{count} {name} uploaded; at most {limit or max_rows} are accepted.")
    return as_unit_rows(name, value, dim)


MAX_LABEL = 2**31 - 1
"""The largest class id an entry may carry (a shared class id of the job's label space)."""


def check_labels(name: str, value: Any, n: int) -> np.ndarray:
    """The class id of each of ``n`` rows as int64 (n,); ``None`` gives -1 (unlabelled) for every row.

    Raises:
        ValueError: naming ``name`` unless ``value`` is None or integers in [0, 2**31) of shape (n,).
    """
    if value is None:
        return np.full(n, -1, np.int64)
    try:
        labels = np.asarray(value)
    except Exception as e:  # ragged nested lists and similar
        raise ValueError(f"{name} could not be converted to an array: {e}") from e
    if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{name} has shape {labels.shape} and dtype {labels.dtype}; expected {n} integers.")
    if n and (labels.min() < 0 or labels.max() > MAX_LABEL):
        raise ValueError(f"{name} has values in [{labels.min()}, {labels.max()}]; expected class ids in [0, 2**31).")
    return labels.astype(np.int64)


def check_sources(source: str | Sequence[str], n: int) -> list[str]:
    """One non-empty source id per row: ``source`` repeated ``n`` times, or ``n`` given ids.

    Raises:
        ValueError: an empty id, a non-string, or a sequence of another length than ``n``.
    """
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
