"""Phantom anatomy: the ground truth (tissue map, lesion geometry) every scanner renders and every task reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from omnifm_monai.data.phantom.operators import _expand_sum, _grid
from omnifm_monai.data.phantom.properties import (
    _BONE,
    _FINDING_SHAPES,
    _KIDNEY,
    _LESION,
    _LIVER,
    _SOFT,
    FINDINGS,
    MAX_LESION_FOCI,
    _check_findings,
    _check_int,
    _chunks,
    _rng,
)

__all__ = ["PhantomAnatomy", "generate_anatomy"]


@dataclass(frozen=True)
class PhantomAnatomy:
    """A batch of phantom anatomies: the ground truth every modality renders and every task reads.

    ``S`` is the spatial shape, ``(H, W)`` for 2D or ``(D, H, W)`` for 3D, with ``image_size`` on every axis;
    ``d`` is the number of spatial dimensions. Row 0 is anterior (top of the image, where the ultrasound
    probe sits); gravity points to higher rows (a supine patient).

    Attributes:
        tissue: int64 ``(N, *S)`` tissue label map, values index :data:`TISSUES`.
        labels: int64 ``(N,)`` finding id, index in :data:`FINDINGS`.
        lesion_mask: bool ``(N, *S)``, ``tissue == TISSUES.index("lesion")``.
        lesion_fraction: float32 ``(N, *S)`` in [0, 1], partial-volume fraction of lesion tissue (soft for
            oedema, anti-aliased otherwise); the mask is ``lesion_fraction >= 0.5``.
        lesion_core: float32 ``(N, *S)`` in [0, 1], fraction of the lesion that is its internal structure
            (necrotic core of a tumour, sedimented layer of a haemorrhage); 0 elsewhere.
        lesion_centre: float32 ``(N, d)`` centroid of the lesion in voxel index coordinates; NaN if none.
        lesion_radius: float32 ``(N,)`` equivalent radius of one lesion focus in pixels
            (``sqrt(area / (count * pi))`` in 2D, the sphere equivalent in 3D); 0 if none.
        lesion_count: int64 ``(N,)`` number of separate lesion foci (0 for ``"normal"``).
        geometry: per-sample shape parameters (small arrays, used by the X-ray projection).
    """

    tissue: np.ndarray
    labels: np.ndarray
    lesion_mask: np.ndarray
    lesion_fraction: np.ndarray
    lesion_core: np.ndarray
    lesion_centre: np.ndarray
    lesion_radius: np.ndarray
    lesion_count: np.ndarray
    geometry: dict[str, np.ndarray] = field(repr=False)

    @property
    def num_samples(self) -> int:
        """Number of anatomies ``N``."""
        return int(self.labels.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial shape ``S``."""
        return tuple(self.tissue.shape[1:])

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return self.tissue.ndim - 1

    @property
    def image_size(self) -> int:
        """Size of every spatial axis."""
        return int(self.tissue.shape[-1])

    def select(self, indices: Sequence[int] | np.ndarray | slice) -> PhantomAnatomy:
        """Return the anatomies at ``indices`` (any numpy index along the batch axis) as a new batch."""
        if isinstance(indices, slice):
            index: slice | np.ndarray = indices
        else:
            index = np.atleast_1d(np.asarray(indices))
        return PhantomAnatomy(
            tissue=self.tissue[index],
            labels=self.labels[index],
            lesion_mask=self.lesion_mask[index],
            lesion_fraction=self.lesion_fraction[index],
            lesion_core=self.lesion_core[index],
            lesion_centre=self.lesion_centre[index],
            lesion_radius=self.lesion_radius[index],
            lesion_count=self.lesion_count[index],
            geometry={k: v[index] for k, v in self.geometry.items()},
        )


def _rotation(angle: np.ndarray, d: int) -> np.ndarray:
    """``(N, d, d)`` rotations in the (y, x) plane (the last two axes); identity on z."""
    n = angle.shape[0]
    r = np.tile(np.eye(d, dtype=np.float32), (n, 1, 1))
    c, s = np.cos(angle), np.sin(angle)
    r[:, -2, -2], r[:, -2, -1], r[:, -1, -2], r[:, -1, -1] = c, s, -s, c
    return r


def _shape_matrix(axes: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """``(N, K, d, d)`` maps from anatomical offsets to a shape's local coordinates: ``diag(1/axes) R``."""
    n, k, d = axes.shape
    rot = _rotation(angle.reshape(-1), d).reshape(n, k, d, d)
    return (rot / axes[..., None]).astype(np.float32)


def _local_profiles(coords: np.ndarray, centre: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Profiles of the local normalised coordinates of ``K`` shapes.

    Args:
        coords: ``(B, d, d, S)``; anatomical coordinate ``i`` is ``sum_j coords[:, i, j, p_j]``.
        centre: ``(B, K, d)`` shape centres in anatomical coordinates.
        matrix: ``(B, K, d, d)`` from :func:`_shape_matrix`.

    Returns:
        ``(B, K, d, d, S)``: local coordinate ``l_i`` of shape ``k`` is ``sum_j out[:, k, i, j, p_j]`` and the
        shape is ``sum_i l_i**2 < 1``.
    """
    b, d, _, s = coords.shape
    local = matrix @ coords.reshape(b, 1, d, d * s)  # (B, K, d, d * S)
    local = local.reshape(b, matrix.shape[1], d, d, s)
    local[:, :, :, 0, :] -= matrix @ centre[..., None]  # the constant offset goes into one profile
    return local


def _quadric(profiles: np.ndarray, local: bool = False):
    """Quadric ``sum_i l_i**2`` ``(B, *S)`` of one shape from its ``(B, d, d, S)`` profiles.

    With ``local``, also return the list of the local coordinates ``l_i``, each ``(B, *S)``.
    """
    ls = [_expand_sum(profiles[:, i]) for i in range(profiles.shape[1])]
    q = ls[0] * ls[0]
    for li in ls[1:]:
        q += li * li
    return (q, ls) if local else q


def _point_quadric(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """The shape's quadric at anatomical ``points`` ``(B, K, d)`` -> ``(B, K)``."""
    m = _rotation(angle, points.shape[-1]) / axes[:, :, None]
    local = np.einsum("bik,bpk->bpi", m, points - centre[:, None, :])
    return (local**2).sum(-1)


class _Draw:
    """Uniform draws for ``n`` samples from one generator."""

    def __init__(self, rng: np.random.Generator, n: int):
        self.rng, self.n = rng, n

    def __call__(self, lo: float, hi: float, *shape: int) -> np.ndarray:
        return (lo + (hi - lo) * self.rng.random((self.n, *shape))).astype(np.float32)


def _draw_geometry(rng: np.random.Generator, labels: np.ndarray, size: int, d: int) -> dict[str, np.ndarray]:
    """Per-sample shape parameters in the anatomical frame (y, x last; z first in 3D)."""
    n = labels.shape[0]
    u = _Draw(rng, n)
    grid = _grid(size)

    # World -> anatomical coordinates: a = R(theta) (p - t) / s + displacement(p); the displacement of
    # coordinate i is a sum over axes j of two low-frequency sinusoids of p_j.
    theta, scale, shift = u(-0.26, 0.26), u(0.95, 1.12), u(-0.06, 0.06, d)
    lin = _rotation(theta, d) / scale[:, None, None]  # (N, d, d)
    coords = lin[:, :, :, None] * (grid[None, None, None, :] - shift[:, None, :, None])  # (N, d, d, S)
    amp, freq, phase = (
        u(0.0, 0.035, d, d, 2),
        u(0.5 * np.pi, 1.5 * np.pi, d, d, 2),
        u(0.0, 2 * np.pi, d, d, 2),
    )
    wave = amp[..., None] * np.sin(freq[..., None] * grid + phase[..., None])  # (N, d, d, 2, S)
    coords = (coords + wave.sum(3)).astype(np.float32)

    def vec(y, x, z=0.0):
        return np.array(([z] if d == 3 else []) + [y, x], dtype=np.float32)

    def organ(centre, jitter, axes, axes_jitter, angle, angle_jitter, z_axis, z_jitter=0.1):
        c = vec(*centre) + u(-jitter, jitter, d)
        if d == 3:
            c[:, 0] = centre[2] + u(-z_jitter, z_jitter)
        a = vec(*axes, z_axis) * u(1 - axes_jitter, 1 + axes_jitter, d)
        return c, a, angle + u(-angle_jitter, angle_jitter)

    shapes = [
        organ((0.0, 0.0, 0.0), 0.0, (0.60, 0.82), 0.08, 0.0, 0.0, 1.6),  # body
        organ((-0.08, -0.30, 0.0), 0.04, (0.29, 0.35), 0.12, 0.0, 0.35, 0.5),  # liver
        organ((0.26, -0.40, -0.15), 0.03, (0.16, 0.10), 0.15, 0.35, 0.2, 0.3),  # kidney (image left)
        organ((0.26, 0.40, -0.15), 0.03, (0.16, 0.10), 0.15, -0.35, 0.2, 0.3),  # kidney (image right)
        organ((0.36, 0.0, 0.0), 0.02, (0.10, 0.10), 0.1, 0.0, 0.0, 4.0, 0.0),  # vertebra (a column in 3D)
    ]
    geom = {
        "coords": coords,
        "shape_centre": np.stack([s[0] for s in shapes], 1).astype(np.float32),  # (N, 5, d)
        "shape_axes": np.stack([s[1] for s in shapes], 1).astype(np.float32),
        "shape_angle": np.stack([s[2] for s in shapes], 1).astype(np.float32),  # (N, 5)
        "fat_fraction": u(0.05, 0.12),
    }
    geom["shape_matrix"] = _shape_matrix(geom["shape_axes"], geom["shape_angle"])

    # Lesion foci: focus 0 in the inner part of the liver, the others on a ring around it.
    lc, la, lang = geom["shape_centre"][:, 1], geom["shape_axes"][:, 1], geom["shape_angle"][:, 1]
    rho, alpha = u(0.0, 0.38), u(0.0, 2 * np.pi)
    local = np.zeros((n, d), dtype=np.float32)
    local[:, -2], local[:, -1] = rho * np.cos(alpha) * la[:, -2], rho * np.sin(alpha) * la[:, -1]
    if d == 3:
        local[:, 0] = u(-0.3, 0.3) * la[:, 0]
    centre0 = lc + np.einsum("bki,bk->bi", _rotation(lang, d), local)  # R^T local

    radius = np.zeros(n, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    lobulation = np.zeros(n, dtype=np.float32)
    soft_edge = np.zeros(n, dtype=bool)
    r_draw, c_draw = u(0.0, 1.0), rng.random(n)
    for fid, name in enumerate(FINDINGS):
        sel = labels == fid
        if name == "normal" or not sel.any():
            continue
        spec = _FINDING_SHAPES[name]
        lo, hi = spec["radius"]
        radius[sel] = lo + (hi - lo) * r_draw[sel]
        c_lo, c_hi = spec["count"]
        count[sel] = c_lo + np.floor(c_draw[sel] * (c_hi - c_lo + 1)).astype(np.int64)
        lobulation[sel] = spec["lobulation"]
        soft_edge[sel] = spec["edge"] is None
    radius = np.maximum(radius, 3.0 / size)  # at least 1.5 pixels: every focus is one connected blob

    focus_axes = radius[:, None, None] * u(0.87, 1.15, MAX_LESION_FOCI, d)  # (N, F, d)
    ring = 2.6 * 1.15 * radius
    beta = u(0.0, 2 * np.pi)
    k = np.arange(1, MAX_LESION_FOCI, dtype=np.float32)
    ang = beta[:, None] + 2 * np.pi * (k - 1) / (MAX_LESION_FOCI - 1)
    offsets = np.zeros((n, MAX_LESION_FOCI, d), dtype=np.float32)
    offsets[:, 1:, -2], offsets[:, 1:, -1] = ring[:, None] * np.cos(ang), ring[:, None] * np.sin(ang)
    focus_centre = centre0[:, None, :] + offsets
    inside = _point_quadric(focus_centre, lc, la, lang) < 0.75
    # A focus must also clear both kidneys (drawn over the liver), or the kidney could split or hide it.
    for k in (2, 3):
        ka = geom["shape_axes"][:, k]
        q = _point_quadric(focus_centre, geom["shape_centre"][:, k], ka, geom["shape_angle"][:, k])
        clearance = 1.0 + 1.3 * radius[:, None] / ka.min(-1, keepdims=True)
        inside &= q > clearance**2
    active = (np.arange(MAX_LESION_FOCI)[None, :] < count[:, None]) & inside
    active[:, 0] = count > 0  # focus 0 is always inside the liver's inner part

    focus_angle = u(0.0, np.pi, MAX_LESION_FOCI)
    geom.update(
        focus_centre=focus_centre.astype(np.float32),
        focus_axes=focus_axes.astype(np.float32),
        focus_angle=focus_angle,
        focus_matrix=_shape_matrix(focus_axes, focus_angle),
        focus_active=active,
        focus_radius=radius,
        soft_edge=soft_edge,
        lobulation=(lobulation * u(0.7, 1.1)).astype(np.float32),
        lobe_freq=u(2.0, 3.5, 2),
        lobe_phase=u(0.0, 2 * np.pi, 2),
        core_radius=np.where(u(0.0, 1.0) < 0.75, u(0.35, 0.6), 0.0).astype(np.float32),
        fluid_level=u(-0.5, 0.2),
    )
    return geom


def _organ_quadrics(geom: dict[str, np.ndarray], sl: slice) -> list[np.ndarray]:
    """Quadrics ``(B, *S)`` of body, liver, kidney, kidney, vertebra for the samples in ``sl``."""
    prof = _local_profiles(geom["coords"][sl], geom["shape_centre"][sl], geom["shape_matrix"][sl])
    return [_quadric(prof[:, k]) for k in range(prof.shape[1])]


def _lesion_fields(geom, sl, labels, liver, size):
    """Lesion fraction and core ``(B, *S)`` for the samples in ``sl`` (``liver``: bool liver mask)."""
    active = geom["focus_active"][sl]
    b, d = active.shape[0], geom["coords"].shape[1]
    bshape = (-1,) + (1,) * d
    spatial = (size,) * d
    frac = np.zeros((b, *spatial), dtype=np.float32)
    core = np.zeros((b, *spatial), dtype=np.float32)
    if not active.any():
        return frac, core
    half = size / 2.0
    r_px = geom["focus_radius"][sl] * half
    width = np.where(geom["soft_edge"][sl], 0.6 * r_px, 0.7)  # edge width in pixels
    gain = (r_px / width).astype(np.float32)
    prof = _local_profiles(geom["coords"][sl], geom["focus_centre"][sl], geom["focus_matrix"][sl])
    for k in range(MAX_LESION_FOCI):
        idx = np.nonzero(active[:, k])[0]
        if idx.size == 0:
            continue
        q, ls = _quadric(prof[idx, k], local=True)
        rho = np.sqrt(q)  # normalised radius: 1 on the focus boundary
        if k == 0:
            # Necrotic core of tumours: a concentric region of the (unlobulated) focus.
            core_r = geom["core_radius"][sl][idx]
            sub = np.nonzero((core_r > 0) & (labels[idx] == FINDINGS.index("solid_tumour")))[0]
            if sub.size:
                scale = (r_px[idx[sub]] / 0.7).reshape(bshape)
                core[idx[sub]] = np.clip(0.5 + (core_r[sub].reshape(bshape) - rho[sub]) * scale, 0.0, 1.0)
            # Lobulated margin: the boundary radius wobbles with two low-frequency waves.
            lob = geom["lobulation"][sl][idx]
            sub = np.nonzero(lob > 0)[0]
            if sub.size:
                fr, ph = geom["lobe_freq"][sl][idx[sub]], geom["lobe_phase"][sl][idx[sub]]
                wobble = np.sin(fr[:, 0].reshape(bshape) * ls[-2][sub] + ph[:, 0].reshape(bshape))
                wobble += np.sin(fr[:, 1].reshape(bshape) * ls[-1][sub] + ph[:, 1].reshape(bshape))
                wobble *= (0.5 * lob[sub]).reshape(bshape)
                rho[sub] /= 1.0 + wobble
        f = 1.0 - rho
        f *= gain[idx].reshape(bshape)
        f += 0.5
        np.clip(f, 0.0, 1.0, out=f)
        frac[idx] = f if k == 0 else np.maximum(frac[idx], f)
    frac *= liver
    # Fluid-fluid level of haemorrhages: the dependent (higher-row) part is sedimented blood.
    haem = np.nonzero(labels == FINDINGS.index("haemorrhage"))[0]
    if haem.size:
        f = frac[haem]
        y = _grid(size).reshape((1,) * (d - 1) + (size, 1))
        ax = tuple(range(1, d + 1))
        cy = (f * y).sum(ax) / np.maximum(f.sum(ax), 1e-6)
        level = cy + geom["fluid_level"][sl][haem] * geom["focus_radius"][sl][haem]
        core[haem] = np.clip(0.5 + (y - level.reshape(bshape)) * (half / 0.7), 0.0, 1.0)
    core *= frac > 0
    return frac, core


def generate_anatomy(
    num_samples: int,
    *,
    image_size: int = 64,
    spatial_dims: int = 2,
    seed: int = 0,
    findings: Sequence[int] | None = None,
) -> PhantomAnatomy:
    """Draw ``num_samples`` random anatomies with a finding each.

    Args:
        num_samples: number of anatomies ``N`` (>= 1).
        image_size: size of every spatial axis (>= 16).
        spatial_dims: 2 for ``(H, W)`` slices, 3 for ``(D, H, W)`` volumes.
        seed: non-negative seed; the same seed gives identical arrays.
        findings: finding ids (indices in :data:`FINDINGS`) that may be drawn, e.g. a client's label space;
            ``None`` for all. Labels cycle through them and are shuffled, so class counts differ by at most 1.

    Returns:
        the :class:`PhantomAnatomy` batch.

    Raises:
        ValueError: when an argument is out of range.
    """
    n = _check_int("num_samples", num_samples, 1)
    size = _check_int("image_size", image_size, 16, 1024)
    d = _check_int("spatial_dims", spatial_dims, 2, 3)
    ids = _check_findings(findings)
    rng = _rng(seed, 0xA7A, d)
    labels = ids[rng.permutation(np.arange(n) % ids.size)].astype(np.int64)
    geom = _draw_geometry(rng, labels, size, d)

    spatial = (size,) * d
    ax = tuple(range(1, d + 1))
    tissue = np.empty((n, *spatial), dtype=np.int64)
    lesion_mask = np.empty((n, *spatial), dtype=bool)
    frac = np.empty((n, *spatial), dtype=np.float32)
    core = np.empty((n, *spatial), dtype=np.float32)
    marginals = np.empty((d, n, size), dtype=np.float32)  # lesion fraction summed over all axes but one
    for sl in _chunks(n, spatial):
        q_body, q_liver, q_kid_l, q_kid_r, q_bone = _organ_quadrics(geom, sl)
        inner_limit = ((1.0 - geom["fat_fraction"][sl]) ** 2).reshape((-1,) + (1,) * d)
        inner = q_body < inner_limit
        t = (q_body < 1.0).astype(np.uint8)  # fat everywhere inside the body ...
        np.copyto(t, np.uint8(_SOFT), where=inner)  # ... but the rim of soft tissue inside
        for q, value in ((q_liver, _LIVER), (q_kid_l, _KIDNEY), (q_kid_r, _KIDNEY), (q_bone, _BONE)):
            np.copyto(t, np.uint8(value), where=(q < 1.0) & inner)
        f, c = _lesion_fields(geom, sl, labels[sl], t == _LIVER, size)
        les = f >= 0.5
        np.copyto(t, np.uint8(_LESION), where=les)
        tissue[sl], lesion_mask[sl], frac[sl], core[sl] = t, les, f, c
        for j in range(d):
            marginals[j, sl] = f.sum(tuple(a for a in ax if a != j + 1))

    volume = lesion_mask.sum(ax).astype(np.float64)
    count = np.where(volume > 0, geom["focus_active"].sum(1), 0).astype(np.int64)
    mass = marginals[0].sum(1, dtype=np.float64)
    has = mass > 0
    centre = np.full((n, d), np.nan, dtype=np.float32)
    idx = np.arange(size, dtype=np.float64)
    for j in range(d):
        centre[has, j] = (marginals[j, has] @ idx) / mass[has]
    per_focus = volume / np.maximum(count, 1)
    radius = np.sqrt(per_focus / np.pi) if d == 2 else np.cbrt(3.0 * per_focus / (4.0 * np.pi))
    return PhantomAnatomy(
        tissue=tissue,
        labels=labels,
        lesion_mask=lesion_mask,
        lesion_fraction=frac,
        lesion_core=core,
        lesion_centre=centre,
        lesion_radius=radius.astype(np.float32),
        lesion_count=count,
        geometry=geom,
    )
