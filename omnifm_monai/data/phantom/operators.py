"""Small numpy image operators (no scipy): separable linear maps applied as matrices along an axis."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def _grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1], float32 ``(size,)``."""
    return ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` Gaussian blur matrix (``x @ G`` blurs the last axis), weights renormalised at borders."""
    if sigma <= 0:
        return np.eye(n, dtype=np.float32)
    i = np.arange(n, dtype=np.float64)
    g = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    g /= g.sum(axis=0, keepdims=True)
    return g.astype(np.float32)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_in, n_out)`` area (box) resampling: each output averages the input it covers."""
    edges_in = np.arange(n_in + 1, dtype=np.float64) / n_in
    edges_out = np.arange(n_out + 1, dtype=np.float64) / n_out
    lo = np.maximum(edges_in[:-1, None], edges_out[None, :-1])
    hi = np.minimum(edges_in[1:, None], edges_out[None, 1:])
    w = np.clip(hi - lo, 0.0, None)
    return (w / w.sum(axis=0, keepdims=True)).astype(np.float32)


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_in, n_out)`` linear interpolation between pixel centres (edge values held)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = pos - lo
    m = np.zeros((n_in, n_out), dtype=np.float64)
    m[lo, np.arange(n_out)] += 1 - w
    m[hi, np.arange(n_out)] += w
    return m.astype(np.float32)


def _apply_axis(x: np.ndarray, mat: np.ndarray, axis: int) -> np.ndarray:
    """Apply the ``(n_in, n_out)`` matrix ``mat`` along ``axis`` of ``x``; the result is C-contiguous."""
    axis = axis % x.ndim
    if axis == x.ndim - 1:
        return x @ mat
    before, after = x.shape[:axis], x.shape[axis + 1 :]
    flat = np.ascontiguousarray(x).reshape(int(np.prod(before)), x.shape[axis], int(np.prod(after)))
    return (mat.T @ flat).reshape(*before, mat.shape[1], *after)


def _apply_separable(x: np.ndarray, mat: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Apply ``mat`` along each of the last ``spatial_dims`` axes."""
    for axis in range(-spatial_dims, 0):
        x = _apply_axis(x, mat, axis)
    return x


def _expand_sum(profiles: np.ndarray) -> np.ndarray:
    """``(B, d, S)`` 1D profiles -> ``(B, S, ..., S)`` with ``out[b, p] = sum_j profiles[b, j, p_j]``."""
    b, d, s = profiles.shape
    views = []
    for j in range(d):
        shape = [b] + [1] * d
        shape[1 + j] = s
        views.append(profiles[:, j].reshape(shape))
    out = views[0] + views[1]  # in 3D a (B, S, S, 1) plane, broadcast by the last term
    for v in views[2:]:
        out = out + v
    return out
