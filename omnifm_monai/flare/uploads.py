"""Server-side checks of what a client uploads, applied before anything touches the global state.

What the server accepts (docs/method.md, "What the server accepts"): every shared key once, in the
global parameter's shape and kind (float parameters: float32/float64 of finite values with
``|v| <= max_abs_value``; integer counters: integers within int32; boolean buffers: booleans), a
sample count that is an integer in ``[1, max_num_samples]``, spectral tokens (1..max rows, finite,
non-zero) and, for label-aware prototypes, one class id per token (integers in ``[0, 2**31)``), a DP
report of finite non-negative numbers and metrics that are finite numbers (others are dropped with a
warning, never the upload).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from omnifm_monai.knowledge import as_unit_tokens, check_labels, is_int

__all__ = [
    "INT_LIMIT",
    "MAX_METRICS",
    "InvalidUploadError",
    "clean_metrics",
    "validate_dp_report",
    "validate_num_samples",
    "validate_token_labels",
    "validate_tokens",
    "validate_upload",
]

INT_LIMIT = 2**31 - 1
"""Largest magnitude an integer parameter (a counter such as ``num_batches_tracked``) may upload."""
MAX_METRICS = 64
"""Metrics kept per upload; the rest are dropped (a site cannot flood the history)."""


class InvalidUploadError(ValueError):
    """A client's upload broke the protocol; the server logs it and goes on without it."""


def _check_kind(key: str, value: np.ndarray, expected: np.dtype, max_abs_value: float) -> np.ndarray:
    """``value`` checked against the global parameter's dtype ``expected``; returned in that dtype."""
    if expected.kind == "f":
        if value.dtype not in (np.float32, np.float64):
            raise InvalidUploadError(f"parameter {key!r} has dtype {value.dtype}; expected float32 or float64.")
        if not np.isfinite(value).all():
            raise InvalidUploadError(f"parameter {key!r} contains NaN or Inf.")
        peak = float(np.abs(value).max(initial=0.0))
        if peak > max_abs_value:
            raise InvalidUploadError(
                f"parameter {key!r} has |value| {peak:.3g}; at most {max_abs_value:.3g} is accepted."
            )
    elif expected.kind in "iu":
        if value.dtype.kind not in "iu":
            raise InvalidUploadError(
                f"parameter {key!r} has dtype {value.dtype}; expected integers (the global {expected})."
            )
        if value.size and int(np.abs(value.astype(np.int64)).max()) > INT_LIMIT:
            raise InvalidUploadError(f"parameter {key!r} holds an integer beyond +-{INT_LIMIT}.")
    elif expected.kind == "b" and value.dtype.kind != "b":
        raise InvalidUploadError(f"parameter {key!r} has dtype {value.dtype}; expected bool.")
    return value.astype(expected, copy=False)


def validate_upload(
    params: Mapping[str, Any],
    shared_shapes: Mapping[str, tuple[int, ...]],
    private_keys: set[str] | frozenset[str],
    *,
    dtypes: Mapping[str, np.dtype] | None = None,
    max_abs_value: float = math.inf,
) -> dict[str, np.ndarray]:
    """Check a client's shared weights and return them as numpy arrays.

    Args:
        params: uploaded ``{key: array}``.
        shared_shapes: the shape of every shared parameter of the global model.
        private_keys: keys that must never leave a site.
        dtypes: the global parameters' dtypes; when given, each upload must be of the same kind
            (see the module docstring) and is returned in that dtype.
        max_abs_value: largest accepted magnitude of a float value (an overflow guard).

    Raises:
        InvalidUploadError: a private or unknown key, a missing key, a wrong shape, a wrong dtype,
            a NaN, Inf or too large value. The message names the key.
    """
    if not isinstance(params, Mapping) or not params:
        raise InvalidUploadError(f"expected a non-empty mapping of shared parameters, got {type(params).__name__}.")
    leaked = sorted(set(params) & set(private_keys))
    if leaked:
        raise InvalidUploadError(f"private keys must never leave a site, got {leaked[:5]}.")
    unknown = sorted(set(params) - set(shared_shapes))
    if unknown:
        raise InvalidUploadError(f"unknown parameter keys {unknown[:5]}.")
    missing = sorted(set(shared_shapes) - set(params))
    if missing:
        raise InvalidUploadError(f"missing shared parameter keys {missing[:5]}.")
    arrays: dict[str, np.ndarray] = {}
    for key, expected_shape in shared_shapes.items():
        try:
            value = np.asarray(params[key])
        except Exception as e:  # a payload object numpy cannot read
            raise InvalidUploadError(f"parameter {key!r} is not an array: {e}") from e
        if value.dtype.kind not in "fiub":
            raise InvalidUploadError(f"parameter {key!r} has dtype {value.dtype}; expected a numeric array.")
        if tuple(value.shape) != tuple(expected_shape):
            raise InvalidUploadError(
                f"parameter {key!r} has shape {tuple(value.shape)}; expected {tuple(expected_shape)}."
            )
        if dtypes is not None:
            value = _check_kind(key, value, np.dtype(dtypes[key]), max_abs_value)
        elif value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InvalidUploadError(f"parameter {key!r} contains NaN or Inf.")
        arrays[key] = value
    return arrays


def validate_num_samples(
    value: Any, *, max_num_samples: int, previous: int | None = None, max_change: float = 2.0
) -> int:
    """The sample count a site reports, checked before it becomes an aggregation weight.

    Args:
        value: the reported count.
        max_num_samples: the cap of any report.
        previous: the count the site reported in its first accepted upload (None: none yet).
        max_change: a later report must lie within ``[previous / max_change, previous * max_change]``.

    Raises:
        InvalidUploadError: not an integer (bools refused), below 1, above the cap, or inconsistent
            with the site's earlier report.
    """
    if not is_int(value) or value < 1:
        raise InvalidUploadError(f"num_samples must be a positive integer, got {value!r}.")
    if value > max_num_samples:  # compared as integers: 10**400 never reaches float()
        raise InvalidUploadError(f"num_samples {value} exceeds max_num_samples={max_num_samples}.")
    if previous is not None and not previous / max_change <= value <= previous * max_change:
        raise InvalidUploadError(
            f"num_samples {value} is inconsistent with the {previous} the site reported first "
            f"(at most a factor {max_change:g} of change is accepted)."
        )
    return int(value)


def _finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_dp_report(value: Any) -> list[float]:
    """The site's DP filter report (epsilon this round, epsilon so far, delta, ...) as Python floats.

    Raises:
        InvalidUploadError: not a short sequence of finite numbers >= 0.
    """
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(items, (list, tuple)) or not 1 <= len(items) <= 8:
        raise InvalidUploadError(f"dp_epsilon must be a list of 1 to 8 numbers, got {value!r:.80}.")
    if not all(_finite_number(v) and v >= 0 for v in items):
        raise InvalidUploadError(f"dp_epsilon must hold finite numbers >= 0, got {items!r:.80}.")
    return [float(v) for v in items]


def clean_metrics(metrics: Any) -> tuple[dict[str, float | int], list[str]]:
    """A site's metrics as JSON-safe Python numbers, and the names of those dropped.

    Kept: string names (at most 128 characters) with finite real values (numpy scalars converted to
    Python ``float``/``int``; bools dropped), up to :data:`MAX_METRICS` of them.
    """
    if not isinstance(metrics, Mapping):
        return {}, ([] if metrics is None else [f"<{type(metrics).__name__}>"])
    kept: dict[str, float | int] = {}
    dropped: list[str] = []
    for name, value in metrics.items():
        if isinstance(value, np.generic) and value.shape == ():
            value = value.item()
        if not isinstance(name, str) or len(name) > 128 or not _finite_number(value) or len(kept) >= MAX_METRICS:
            dropped.append(repr(name)[:40])
            continue
        kept[name] = int(value) if is_int(value) else float(value)
    return kept, dropped


def validate_tokens(tokens: Any, token_dim: int, max_tokens: int) -> np.ndarray:
    """Check an uploaded spectral summary (N, d_s) and return it L2-normalised as float32.

    The check itself is the knowledge base's (:func:`~omnifm_monai.knowledge.as_unit_tokens`, the
    one validation of spectral tokens); here its ValueError becomes an :class:`InvalidUploadError`.

    Raises:
        InvalidUploadError: no row (N = 0 would wipe the site's queries), more than ``max_tokens``
            rows (a token flood), or anything the knowledge base would refuse (wrong rank or width,
            NaN/Inf, a zero-norm row).
    """
    try:
        x = as_unit_tokens(tokens, token_dim, max_rows=max_tokens, name="spectral tokens")
    except ValueError as e:
        raise InvalidUploadError(str(e)) from e
    if x.shape[0] == 0:
        raise InvalidUploadError(f"0 spectral tokens uploaded (shape {x.shape}); expected at least one row.")
    return x


def validate_token_labels(labels: Any, num_tokens: int) -> np.ndarray | None:
    """Check the class ids a site sent with its ``num_tokens`` spectral tokens (label-aware prototypes).

    Returns:
        the ids as int64 (N,), or None when the site sent none.

    Raises:
        InvalidUploadError: not one integer class id in ``[0, 2**31)`` per token.
    """
    if labels is None:
        return None
    try:
        return check_labels("spectral token labels", labels, num_tokens)
    except ValueError as e:
        raise InvalidUploadError(str(e)) from e
