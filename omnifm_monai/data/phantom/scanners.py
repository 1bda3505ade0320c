"""The seven simulated scanners: one renderer per modality and :func:`render`, which dispatches to them."""

from __future__ import annotations

import math

import numpy as np

from omnifm_monai.data.phantom.anatomy import PhantomAnatomy, _organ_quadrics
from omnifm_monai.data.phantom.operators import _apply_separable, _area_matrix, _gaussian_matrix, _grid, _linear_matrix
from omnifm_monai.data.phantom.properties import (
    _BONE,
    _FAT,
    _KIDNEY,
    _LIVER,
    _PROPERTY_NAMES,
    _SOFT,
    FINDINGS,
    LESION_PROPERTIES,
    MODALITIES,
    TISSUE_PROPERTIES,
    TISSUES,
    _check_modality,
    _chunks,
    _rng,
)

__all__ = ["render"]


_CT_WINDOW = (40.0, 400.0)  # level, width (HU)
_CT_NOISE_HU = 12.0
_MR_SEQUENCES = {"MR-T1": (500.0, 15.0), "MR-T2": (4000.0, 100.0)}  # TR, TE (ms)
_MR_WHITE = {"MR-T1": 0.7, "MR-T2": 0.65}  # signal displayed as white (fluid saturates on T2)
_MR_NOISE = 0.025  # Rician sigma relative to the display window
_PET_SIGMA_PX = 2.0  # Gaussian PSF sigma at 64 px
_PET_COUNTS_PER_SUV = 25.0  # expected counts per SUV unit per low-resolution pixel at nominal dose
_PET_WINDOW_SUV = 7.0
_MU_WATER = 3.0  # linear attenuation of water per normalised unit (0.2 / cm over a 15 cm half field)
_XRAY_BONE_BOOST = 2.0  # radiography's lower effective energy: photoelectric excess of dense tissue vs CT
_XRAY_PHOTONS = 2.0e5  # unattenuated photons per pixel
_XRAY_WINDOW = 5.5  # line integral displayed as white
_US_DB_PER_PX_64 = 2.0  # round-trip dB per (dB/cm/MHz) per pixel at 64 px (2 MHz, 5 mm pixels)
_US_NOMINAL_ATT = 0.6  # time-gain compensation slope, dB/cm/MHz
_US_DYNAMIC_RANGE_DB = 36.0
_US_REFERENCE_DB = -12.0  # display gain: an echogenicity of 1 sits 12 dB below white
_US_SECTOR_HALF_ANGLE = math.radians(38.0)
_HE_STAIN = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]], dtype=np.float32)  # H, E (OD per RGB)
_NUCLEUS_OD = 1.1

_MODALITY_SALT = {m: i + 101 for i, m in enumerate(MODALITIES)}


def _column(prop: str, transform=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables of one property: per tissue ``(T,)``, lesion body and core per finding ``(F,)``.

    The ``"lesion"`` tissue row holds the liver value (lesions sit in the liver), so that a partial-volume
    mixture is ``tissue_lut[tissue] + fraction * (solid - liver + core * (core_value - solid))``.
    """

    def value(row):
        return transform(row) if transform is not None else row[prop]

    tissue = [value(TISSUE_PROPERTIES[t]) for t in TISSUES[:-1]]
    tissue.append(tissue[_LIVER])
    solid, core = [tissue[_LIVER]], [tissue[_LIVER]]
    for name in FINDINGS[1:]:
        spec = LESION_PROPERTIES[name]
        solid.append(value(spec["solid"]))
        core.append(value(spec.get("core", spec["solid"])))
    return tuple(np.asarray(v, dtype=np.float32) for v in (tissue, solid, core))


def _mixed(anatomy: PhantomAnatomy, sl: slice, tables) -> np.ndarray:
    """Partial-volume property map ``(B, *S)`` float32 from the ``_column`` tables."""
    lut, solid, core = tables
    labels = anatomy.labels[sl]
    bshape = (-1,) + (1,) * anatomy.spatial_dims
    d_solid = (solid[labels] - lut[_LIVER]).reshape(bshape)
    d_core = (core[labels] - solid[labels]).reshape(bshape)
    out = lut[anatomy.tissue[sl]]
    out += anatomy.lesion_fraction[sl] * (d_solid + anatomy.lesion_core[sl] * d_core)
    return out


def _mr_signal(tr: float, te: float):
    def signal(row):
        return row["pd"] * (1 - math.exp(-tr / row["t1_ms"])) * math.exp(-te / row["t2_ms"])

    return signal


def _render_ct(anatomy, sl, rng):
    hu = _mixed(anatomy, sl, _TABLES["hu"])
    sigma = _CT_NOISE_HU * rng.uniform(0.8, 1.25, size=hu.shape[0]).astype(np.float32)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * sigma.reshape((-1,) + (1,) * (hu.ndim - 1))
    level, width = _CT_WINDOW
    hu -= level - width / 2
    hu *= 1.0 / width
    return hu[:, None]


def _render_mr(anatomy, sl, rng, modality):
    s = _mixed(anatomy, sl, _TABLES[modality])
    b, d = s.shape[0], anatomy.spatial_dims
    grid = _grid(anatomy.image_size)
    # Smooth multiplicative bias field: product over axes of exp(c1 p + c2 p^2), then scanner gain.
    c = rng.uniform(-1.0, 1.0, size=(b, d, 2)).astype(np.float32) * np.array([0.25, 0.15], dtype=np.float32)
    prof = np.exp(c[..., :1] * grid + c[..., 1:] * grid**2)  # (B, d, S)
    gain = rng.uniform(0.85, 1.1, size=b).astype(np.float32) / _MR_WHITE[modality]
    prof[:, 0] *= gain[:, None]
    bias = None
    for j in range(d):
        shape = [b] + [1] * d
        shape[1 + j] = anatomy.image_size
        term = prof[:, j].reshape(shape)
        bias = term if bias is None else bias * term
    s *= bias
    # Rician noise: magnitude of the signal plus complex Gaussian noise.
    sigma = _MR_NOISE * rng.uniform(0.7, 1.4, size=b).astype(np.float32).reshape((-1,) + (1,) * d)
    re = rng.standard_normal(s.shape, dtype=np.float32)
    re *= sigma
    re += s
    im = rng.standard_normal(s.shape, dtype=np.float32)
    im *= sigma
    np.multiply(re, re, out=re)
    np.multiply(im, im, out=im)
    re += im
    np.sqrt(re, out=re)
    return re[:, None]


def _render_pet(anatomy, sl, rng):
    suv = _mixed(anatomy, sl, _TABLES["suv"])
    size, d = anatomy.image_size, anatomy.spatial_dims
    down, up = _pet_matrices(size)
    low = _apply_separable(suv, down, d)
    np.maximum(low, 0.0, out=low)
    dose = _PET_COUNTS_PER_SUV * rng.uniform(0.6, 1.4, size=low.shape[0]).reshape((-1,) + (1,) * d)
    counts = rng.poisson(low * dose).astype(np.float32)
    counts /= dose.astype(np.float32)
    img = _apply_separable(counts, up, d)
    img *= 1.0 / _PET_WINDOW_SUV
    return img[:, None]


def _render_xray(anatomy, sl, rng):
    d, size = anatomy.spatial_dims, anatomy.image_size
    geom = anatomy.geometry
    mu_tissue, mu_solid, mu_core = _TABLES["mu"]
    if d == 2:
        # Each organ is an ellipsoid whose semi-axis along the beam is its smaller in-plane semi-axis (the
        # body's depth is its anterior-posterior semi-axis); the line integral sums all overlapping organs.
        quadrics = _organ_quadrics(geom, sl)
        axes = geom["shape_axes"][sl]
        depth = axes.min(-1)  # (B, 5)
        depth[:, 0] = axes[:, 0, -2]
        fat = geom["fat_fraction"][sl]
        inner = ((1 - fat) ** 2)[:, None, None]
        body_dome = np.sqrt(np.clip(1.0 - quadrics[0], 0.0, None))
        path = body_dome * (2 * depth[:, 0] * mu_tissue[_FAT])[:, None, None]
        inner_dome = np.sqrt(np.clip(1.0 - quadrics[0] / inner, 0.0, None))
        path += inner_dome * (2 * depth[:, 0] * (1 - fat) * (mu_tissue[_SOFT] - mu_tissue[_FAT]))[:, None, None]
        for k, t in ((1, _LIVER), (2, _KIDNEY), (3, _KIDNEY), (4, _BONE)):
            dome = np.sqrt(np.clip(1.0 - quadrics[k], 0.0, None))
            path += dome * (2 * depth[:, k] * (mu_tissue[t] - mu_tissue[_SOFT]))[:, None, None]
        # Lesions: a slab as thick as the focus diameter, replacing liver.
        labels = anatomy.labels[sl]
        d_solid = (mu_solid[labels] - mu_tissue[_LIVER]) * 2 * geom["focus_radius"][sl]
        d_core = (mu_core[labels] - mu_solid[labels]) * 2 * geom["focus_radius"][sl]
        path += anatomy.lesion_fraction[sl] * (d_solid[:, None, None] + anatomy.lesion_core[sl] * d_core[:, None, None])
    else:
        # 3D: accumulate attenuation along the anterior-posterior (H) axis, row by row.
        mu = _mixed(anatomy, sl, _TABLES["mu"])
        path = np.cumsum(mu, axis=-2, dtype=np.float32) * (2.0 / size)
    b = path.shape[0]
    photons = _XRAY_PHOTONS * rng.uniform(0.5, 1.5, size=b).astype(np.float32).reshape((-1,) + (1,) * d)
    expected = photons * np.exp(-path)
    # Photon noise: Gaussian approximation of Poisson statistics (variance = mean).
    measured = expected + np.sqrt(expected) * rng.standard_normal(path.shape, dtype=np.float32)
    np.maximum(measured, 1.0, out=measured)
    measured /= photons
    img = -np.log(measured)
    if d == 2:
        img = _apply_separable(img, _gaussian_matrix(size, 0.5 * size / 64), d)  # detector blur
    img *= 1.0 / _XRAY_WINDOW
    return img[:, None]


def _render_us(anatomy, sl, rng):
    d, size = anatomy.spatial_dims, anatomy.image_size
    echo = _mixed(anatomy, sl, _TABLES["echo"])
    att = _mixed(anatomy, sl, _TABLES["us_att"])
    # Residual attenuation after time-gain compensation (which assumes a nominal tissue slope), accumulated
    # along depth (rows): bone and calcification shadow, fluid enhances what lies behind it.
    att -= _US_NOMINAL_ATT * (anatomy.tissue[sl] > 0)
    att *= _US_DB_PER_PX_64 * 64.0 / size
    loss_db = np.cumsum(att, axis=-2, dtype=np.float32)
    loss_db -= att  # attenuation of the rows in front of each pixel
    np.clip(loss_db, -30.0, 80.0, out=loss_db)
    amp = np.power(np.float32(10.0), loss_db * np.float32(-1.0 / 20.0))
    # Specular echoes at interfaces (change of echogenicity along the beam).
    interface = np.zeros_like(echo)
    interface[..., 1:, :] = np.abs(np.diff(echo, axis=-2))
    echo += 0.8 * interface
    echo *= amp
    # Rayleigh speckle, correlated laterally (coarser lateral than axial resolution).
    b = echo.shape[0]
    half = max(2, size // 2)
    re = rng.standard_normal((b, *echo.shape[1:-1], half), dtype=np.float32)
    im = rng.standard_normal((b, *echo.shape[1:-1], half), dtype=np.float32)
    up = _linear_matrix(half, size) * np.float32(math.sqrt(2.0))  # restore unit power after interpolation
    re, im = re @ up, im @ up
    speckle = np.sqrt(0.5 * (re * re + im * im))
    echo *= speckle
    gain = rng.uniform(0.8, 1.25, size=b).astype(np.float32).reshape((-1,) + (1,) * d)
    echo *= gain
    img = (20.0 * np.log10(echo + 1e-4) + (_US_REFERENCE_DB + _US_DYNAMIC_RANGE_DB)) / _US_DYNAMIC_RANGE_DB
    np.maximum(img, 0.0, out=img)  # no negative zeros after masking
    img *= _us_sector(size, d)
    return img[:, None]


def _render_pathology(anatomy, sl, rng):
    d = anatomy.spatial_dims
    haem = _mixed(anatomy, sl, _TABLES["haem"])
    eosin = _mixed(anatomy, sl, _TABLES["eosin"])
    density = _mixed(anatomy, sl, _TABLES["nuclei"])
    b = haem.shape[0]
    bshape = (-1,) + (1,) * d
    # Nuclei: random seeds at the tissue's density, dilated into small round dots.
    seeds = (rng.random(haem.shape, dtype=np.float32) < density).astype(np.float32)
    nuclei = seeds
    for axis in range(1, d + 1):  # separable [0.5, 1, 0.5] dilation: round 3-pixel dots
        lead = [slice(None)] * (d + 1)
        trail = [slice(None)] * (d + 1)
        lead[axis], trail[axis] = slice(1, None), slice(None, -1)
        grown = nuclei.copy()
        grown[tuple(lead)] += 0.5 * nuclei[tuple(trail)]
        grown[tuple(trail)] += 0.5 * nuclei[tuple(lead)]
        nuclei = grown
    np.minimum(nuclei, 1.0, out=nuclei)
    nuclei *= anatomy.tissue[sl] > 0
    haem += _NUCLEUS_OD * nuclei
    # Fibrillar texture and stain variation per sample (concentration and stain hue).
    eosin *= 0.85 + 0.3 * rng.random(eosin.shape, dtype=np.float32)
    haem *= rng.uniform(0.75, 1.25, size=b).astype(np.float32).reshape(bshape)
    eosin *= rng.uniform(0.75, 1.25, size=b).astype(np.float32).reshape(bshape)
    stains = _HE_STAIN[None] * rng.uniform(0.85, 1.15, size=(b, 2, 3)).astype(np.float32)
    out = np.empty((b, 3, *haem.shape[1:]), dtype=np.float32)
    for ch in range(3):
        od = haem * stains[:, 0, ch].reshape(bshape)
        od += eosin * stains[:, 1, ch].reshape(bshape)
        np.exp(-od, out=out[:, ch])
    return out


def _pet_matrices(size: int) -> tuple[np.ndarray, np.ndarray]:
    low = max(4, size // 2)
    sigma = _PET_SIGMA_PX * size / 64.0
    down = _gaussian_matrix(size, sigma) @ _area_matrix(size, low)
    return down, _linear_matrix(low, size)


def _us_sector(size: int, d: int) -> np.ndarray:
    """Sector mask ``(S, S)`` (broadcast over depth in 3D) with the probe just above row 0."""
    g = _grid(size)
    y, x = g[:, None] + 1.05, g[None, :]
    angle = np.arctan2(np.abs(x), y)
    mask = ((angle < _US_SECTOR_HALF_ANGLE) & (np.hypot(x, y) < 2.0)).astype(np.float32)
    return mask


def _build_tables() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    tables = {p: _column(p) for p in _PROPERTY_NAMES}
    for name, (tr, te) in _MR_SEQUENCES.items():
        tables[name] = _column(name, _mr_signal(tr, te))

    def mu(row):
        excess = row["hu"] / 1000.0
        return _MU_WATER * max(0.0, 1.0 + excess * (_XRAY_BONE_BOOST if excess > 0.3 else 1.0))

    tables["mu"] = _column("mu", mu)
    return tables


_TABLES = _build_tables()

_RENDERERS = {
    "CT": _render_ct,
    "MR-T1": lambda a, s, r: _render_mr(a, s, r, "MR-T1"),
    "MR-T2": lambda a, s, r: _render_mr(a, s, r, "MR-T2"),
    "PET": _render_pet,
    "XRAY": _render_xray,
    "US": _render_us,
    "PATHOLOGY": _render_pathology,
}


def render(anatomy: PhantomAnatomy, modality: str, *, seed: int = 0) -> np.ndarray:
    """Image ``anatomy`` through the simulated scanner of ``modality``.

    Args:
        anatomy: batch from :func:`generate_anatomy`.
        modality: one of :data:`MODALITIES`.
        seed: non-negative seed of the scanner's randomness (noise, gain, bias field, stain); the same
            anatomy and seed give identical images.

    Returns:
        float32 ``(N, C, *S)`` in [0, 1]; ``C`` is 3 (RGB) for ``"PATHOLOGY"``, 1 otherwise.

    Raises:
        ValueError: for an unknown modality or a negative seed.
        TypeError: when ``anatomy`` is not a :class:`PhantomAnatomy`.
    """
    modality = _check_modality(modality)
    if not isinstance(anatomy, PhantomAnatomy):
        raise TypeError(f"anatomy must be a PhantomAnatomy, got {type(anatomy).__name__}.")
    rng = _rng(seed, _MODALITY_SALT[modality])
    channels = 3 if modality == "PATHOLOGY" else 1
    out = np.empty((anatomy.num_samples, channels, *anatomy.spatial_shape), dtype=np.float32)
    fn = _RENDERERS[modality]
    for sl in _chunks(anatomy.num_samples, anatomy.spatial_shape):
        out[sl] = fn(anatomy, sl, rng)
    np.clip(out, 0.0, 1.0, out=out)
    return out
