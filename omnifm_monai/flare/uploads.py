"""Server-side checks of what a client uploads, applied before anything touches the global state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from omnifm_monai.knowledge import as_unit_tokens

__all__ = ["InvalidUploadError", "validate_upload", "validate_tokens"]


class InvalidUploadError(ValueError):
    """A client's upload broke the protocol; the server logs it and goes on without it."""


def validate_upload(
    params: Mapping[str, Any],
    shared_shapes: Mapping[str, tuple[int, ...]],
    private_keys: set[str] | frozenset[str],
) -> dict[str, np.ndarray]:
    """Check a client's shared weights and return them as numpy arrays.

    Args:
        params: uploaded ``{key: array}``.
        shared_shapes: the shape of every shared parameter of the global model.
        private_keys: keys that must never leave a site.

    Raises:
        InvalidUploadError: a private or unknown key, a missing key, a wrong shape, a non-numeric,
            NaN or Inf value. The message names the key.
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
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InvalidUploadError(f"parameter {key!r} contains NaN or Inf.")
        arrays[key] = value
    return arrays


def validate_tokens(tokens: Any, token_dim: int, max_tokens: int) -> np.ndarray:
    """Check an uploaded spectral summary (N, d_s) and return it L2-normalised as float32.

    The check itself is the knowledge base's (:func:`~omnifm_monai.knowledge.as_unit_tokens`, the
    one validation of spectral tokens); here its ValueError becomes an :class:`InvalidUploadError`.

    Raises:
        InvalidUploadError: more than ``max_tokens`` rows (a token flood), or anything the knowledge
            base would refuse (wrong rank or width, NaN/Inf, a zero-norm row).
    """
    try:
        return as_unit_tokens(tokens, token_dim, max_rows=max_tokens, name="spectral tokens")
    except ValueError as e:
        raise InvalidUploadError(str(e)) from e
