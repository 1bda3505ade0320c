"""Embedded multi-modality phantom: one synthetic anatomy, seven simulated scanners.

The phantom is the default data of every OmniFM-MONAI task. :func:`generate_anatomy` draws a batch of
abdomen-like anatomies (body ellipse with a subcutaneous fat rim, liver, two kidneys, a vertebra and, unless
the finding is ``"normal"``, a lesion inside the liver); :func:`render` images one anatomy through a
modality whose physics is imitated, not tuned for any learning method:

- ``CT``: Hounsfield units from a tissue table, sharp edges (partial volume only), Gaussian noise
  (about 12 HU), abdominal window L40/W400 mapped to [0, 1].
- ``MR-T1`` / ``MR-T2``: spin-echo signal ``PD * (1 - exp(-TR/T1)) * exp(-TE/T2)`` from per-tissue T1, T2
  and proton density (T1w TR/TE = 500/15 ms, T2w 4000/100 ms), smooth multiplicative bias field,
  scanner gain, Rician noise (magnitude of complex Gaussian noise).
- ``PET``: standardised uptake (SUV) map, area downsampling to half resolution with a Gaussian point
  spread function (sigma 2 px at 64 px), Poisson counting noise at a random dose, linear upsampling,
  SUV window [0, 7].
- ``XRAY``: 2D: every organ is an ellipsoid in the beam direction, the line integral of the linear
  attenuation coefficient (from HU; the excess of dense tissue doubled for radiography's lower effective
  energy) is summed over all overlapping organs, Beer-Lambert transmission with photon (Poisson-like)
  noise, log transform, slight detector blur, inverted display (bone white). Soft-tissue lesions are
  nearly invisible, as on a real radiograph; calcification is not.
  3D has no projection axis to spare: voxel ``(d, h, w)`` shows the attenuation accumulated by the
  beam from row 0 to row ``h`` (a depth-resolved radiograph; the last row is the full projection).
- ``US``: echogenicity table, specular echoes at interfaces, depth attenuation with time-gain
  compensation (so that low-attenuation cysts give posterior enhancement and calcification or bone casts
  an acoustic shadow), laterally correlated multiplicative Rayleigh speckle, log compression over a
  36 dB dynamic range, sector (cone) mask with the probe above row 0.
- ``PATHOLOGY``: H&E-like RGB by Beer-Lambert mixing of haematoxylin and eosin optical densities
  (Ruifrok-Johnston stain vectors), nuclei as small dark-purple dots whose density depends on tissue
  and finding, per-sample stain variation.

Every modality sees every finding, differently: a cyst is hypodense on CT, dark on T1, bright on T2,
cold on PET, invisible on X-ray, anechoic with posterior enhancement on US and acellular on pathology;
a solid tumour is slightly hypodense with a necrotic core, hot on PET, hypoechoic, hypercellular; and so
on (see :data:`LESION_PROPERTIES`). Lesion shape and internal structure (lobulation, necrotic core,
fluid-fluid level, soft oedema edge, clusters of specks) come from the anatomy and are shared by all
modalities. Labels, segmentation masks, HR/LR pairs (:func:`degrade`), co-registered pairs
(:func:`make_coregistered_pair`) and question-answer pairs (:func:`make_vqa_pairs`) all derive from the
same ground truth.

Anatomy: random rotation (+-15 degrees), scale, shift and a smooth displacement field; organ sizes,
positions and orientations jitter per sample. The displacement is additive-separable,
``u_i(p) = sum_j g_ij(p_j)`` with each ``g_ij`` two low-frequency sinusoids, so every warped coordinate is a
sum of 1D profiles and an organ costs five array operations. Findings (see ``_FINDING_SHAPES``): cyst,
1-2 round foci; solid tumour, lobulated, necrotic core in 3 of 4; calcification, 1-4 specks of at least
1.5 px radius; haemorrhage, with a horizontal fluid-fluid level (sedimented blood in the dependent part);
oedema, large with an ill-defined edge. Every focus is one connected blob and clears the kidneys, so
``lesion_count`` equals the number of connected components of the mask.

Everything is numpy only (no scipy: blur, resampling and interpolation are small matrices applied along
each axis), vectorised over the batch and computed in cache-sized chunks.

Speed of ``generate_anatomy`` + ``render`` on one core of this project's 2-core CPU machine (numpy 2.4,
single-threaded BLAS; 2048 samples, 64 x 64, 2D; median of 3 runs, counted per CPU-second because the
machine is shared), in samples per second: CT 6300, MR-T1 4900, MR-T2 5000, PET 5800, XRAY 4100,
US 4300, PATHOLOGY 4900 (anatomy alone 9200). 3D at 32^3: 560 (US) to 770 (PET) per second.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MODALITIES",
    "FINDINGS",
    "TISSUES",
    "TISSUE_PROPERTIES",
    "LESION_PROPERTIES",
    "PhantomAnatomy",
    "PhantomDataset",
    "generate_anatomy",
    "render",
    "make_phantom_dataset",
    "make_coregistered_pair",
    "degrade",
    "make_vqa_pairs",
    "MODALITY_ANSWERS",
    "MAX_LESION_FOCI",
    "appearance_answer",
]

MODALITIES: tuple[str, ...] = ("CT", "MR-T1", "MR-T2", "PET", "XRAY", "US", "PATHOLOGY")
"""Simulated imaging modalities; ``PATHOLOGY`` is RGB, the others have one channel."""

FINDINGS: tuple[str, ...] = ("normal", "cyst", "solid_tumour", "calcification", "haemorrhage", "oedema")
"""Class names of the classification label; the global label id is the index."""

TISSUES: tuple[str, ...] = ("background", "fat", "soft_tissue", "liver", "kidney", "bone", "lesion")
"""Values of the tissue label map (and of the segmentation masks): 0 background, organs, last lesion."""

_FAT, _SOFT, _LIVER, _KIDNEY, _BONE, _LESION = range(1, 7)

_PROPERTY_NAMES = ("hu", "t1_ms", "t2_ms", "pd", "suv", "echo", "us_att", "haem", "eosin", "nuclei")

TISSUE_PROPERTIES: dict[str, dict[str, float]] = {
    # hu: CT number; t1_ms/t2_ms/pd: relaxation times (1.5 T) and proton density; suv: FDG uptake;
    # echo: ultrasound echogenicity (0 anechoic .. 1 bright); us_att: attenuation in dB/cm/MHz;
    # haem/eosin: H&E optical densities; nuclei: fraction of pixels seeding a nucleus.
    "background": dict(hu=-1000, t1_ms=1, t2_ms=1, pd=0, suv=0, echo=0, us_att=0, haem=0, eosin=0, nuclei=0),
    "fat": dict(hu=-100, t1_ms=260, t2_ms=80, pd=0.9, suv=0.3, echo=0.45, us_att=0.6, haem=0.04, eosin=0.12,
                nuclei=0.005),
    "soft_tissue": dict(hu=45, t1_ms=870, t2_ms=47, pd=0.75, suv=0.6, echo=0.35, us_att=0.7, haem=0.1,
                        eosin=0.75, nuclei=0.02),
    "liver": dict(hu=60, t1_ms=500, t2_ms=43, pd=0.7, suv=2.0, echo=0.55, us_att=0.5, haem=0.18, eosin=0.55,
                  nuclei=0.04),
    "kidney": dict(hu=35, t1_ms=1000, t2_ms=85, pd=0.8, suv=3.5, echo=0.3, us_att=0.7, haem=0.3, eosin=0.5,
                   nuclei=0.07),
    "bone": dict(hu=700, t1_ms=1000, t2_ms=2, pd=0.1, suv=0.8, echo=0.9, us_att=20.0, haem=0.45, eosin=0.9,
                 nuclei=0.01),
}  # fmt: skip
"""Physical properties of each normal tissue (the ``"lesion"`` tissue takes them from the finding)."""

LESION_PROPERTIES: dict[str, dict[str, dict[str, float]]] = {
    # "solid": the lesion body; "core": its internal structure (necrotic core of a tumour, dependent
    # sedimented layer of a haemorrhage); the same for homogeneous findings.
    "cyst": {
        "solid": dict(hu=5, t1_ms=3000, t2_ms=2000, pd=1.0, suv=0.1, echo=0.02, us_att=0.01, haem=0.02,
                      eosin=0.08, nuclei=0.0),
    },
    "solid_tumour": {
        "solid": dict(hu=40, t1_ms=1100, t2_ms=85, pd=0.8, suv=8.0, echo=0.3, us_att=0.8, haem=0.55,
                      eosin=0.4, nuclei=0.25),
        "core": dict(hu=20, t1_ms=2000, t2_ms=300, pd=0.9, suv=0.8, echo=0.15, us_att=0.3, haem=0.12,
                     eosin=0.85, nuclei=0.01),
    },
    "calcification": {
        "solid": dict(hu=800, t1_ms=1000, t2_ms=3, pd=0.05, suv=0.4, echo=1.0, us_att=15.0, haem=1.1,
                      eosin=0.3, nuclei=0.0),
    },
    "haemorrhage": {
        "solid": dict(hu=70, t1_ms=300, t2_ms=180, pd=0.85, suv=0.6, echo=0.7, us_att=0.3, haem=0.05,
                      eosin=1.2, nuclei=0.005),
        "core": dict(hu=85, t1_ms=400, t2_ms=60, pd=0.85, suv=0.6, echo=0.85, us_att=0.3, haem=0.05,
                     eosin=1.5, nuclei=0.005),
    },
    "oedema": {
        "solid": dict(hu=30, t1_ms=1200, t2_ms=120, pd=0.85, suv=1.2, echo=0.42, us_att=0.35, haem=0.12,
                      eosin=0.3, nuclei=0.015),
    },
}  # fmt: skip
"""Physical properties of each finding's lesion tissue (same columns as :data:`TISSUE_PROPERTIES`)."""

# Geometry of each finding, in normalised image units (the image spans [-1, 1]): radius range, number of
# separate foci, lobulation amplitude, edge width in pixels (None: 0.6 of the radius, i.e. ill-defined).
_FINDING_SHAPES: dict[str, dict] = {
    "cyst": dict(radius=(0.07, 0.12), count=(1, 2), lobulation=0.0, edge=0.7),
    "solid_tumour": dict(radius=(0.11, 0.17), count=(1, 1), lobulation=0.4, edge=0.7),
    "calcification": dict(radius=(0.03, 0.045), count=(1, 4), lobulation=0.0, edge=0.7),
    "haemorrhage": dict(radius=(0.09, 0.14), count=(1, 1), lobulation=0.1, edge=0.7),
    "oedema": dict(radius=(0.15, 0.23), count=(1, 1), lobulation=0.15, edge=None),
}
MAX_LESION_FOCI = 4

# Scanner constants.
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
_TARGET_CHUNK_ELEMENTS = 1 << 16


# ----------------------------------------------------------------------------------------------------------
# Public containers
# ----------------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class PhantomDataset:
    """Images of one modality with their classification and segmentation ground truth.

    Attributes:
        images: float32 ``(N, C, *S)`` in [0, 1]; ``C`` is 3 for ``"PATHOLOGY"``, else 1.
        labels: int64 ``(N,)`` finding id (index in :data:`FINDINGS`).
        masks: int64 ``(N, *S)`` segmentation target: 0 background, ``1..k`` organs, last (6) lesion;
            the values index :data:`TISSUES`.
        modality: one of :data:`MODALITIES`.
        anatomy: the ground truth the images were rendered from (VQA, co-registration, lesion geometry).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    modality: str
    anatomy: PhantomAnatomy | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be an integer, not a bool.")
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be an integer.") from None
    if out < minimum or (maximum is not None and out > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name}={value!r} must be {bound}.")
    return out


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        hint = ""
        if isinstance(modality, str):
            close = [m for m in MODALITIES if m.lower().replace("-", "") == modality.lower().replace("-", "")]
            hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"modality={modality!r} is not supported; valid modalities: {MODALITIES}.{hint}")
    return modality


def _check_findings(findings: Sequence[int] | None) -> np.ndarray:
    if findings is None:
        return np.arange(len(FINDINGS))
    if isinstance(findings, (str, bytes)) or not isinstance(findings, (Sequence, np.ndarray)):
        raise ValueError(f"findings={findings!r} must be a sequence of finding ids in [0, {len(FINDINGS) - 1}].")
    ids = []
    for f in findings:
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)):
            raise ValueError(f"findings={list(findings)!r} must contain integer finding ids, got {f!r}.")
        if not 0 <= int(f) < len(FINDINGS):
            raise ValueError(f"findings={list(findings)!r}: id {int(f)} is not in [0, {len(FINDINGS) - 1}].")
        ids.append(int(f))
    if not ids:
        raise ValueError("findings=[] must name at least one finding id.")
    if len(set(ids)) != len(ids):
        raise ValueError(f"findings={ids!r} must not repeat an id.")
    return np.asarray(ids, dtype=np.int64)


def _rng(seed: int, *salt: int) -> np.random.Generator:
    seed = _check_int("seed", seed, 0)
    return np.random.default_rng(np.random.SeedSequence([seed, *salt]))


def _chunks(n: int, spatial: tuple[int, ...]):
    size = max(1, _TARGET_CHUNK_ELEMENTS // int(np.prod(spatial)))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# ----------------------------------------------------------------------------------------------------------
# Small numpy image operators (no scipy): separable linear maps applied as matrices along an axis
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


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


def make_phantom_dataset(
    modality: str,
    num_samples: int,
    *,
    image_size: int = 64,
    spatial_dims: int = 2,
    seed: int = 0,
    findings: Sequence[int] | None = None,
) -> PhantomDataset:
    """Generate anatomies and render them through one modality.

    Args:
        modality: one of :data:`MODALITIES`.
        num_samples: number of images (>= 1).
        image_size: size of every spatial axis (>= 16).
        spatial_dims: 2 or 3.
        seed: seeds both the anatomy and the scanner.
        findings: finding ids that may be drawn (``None``: all of :data:`FINDINGS`).

    Returns:
        a :class:`PhantomDataset`; ``masks`` is the tissue label map.

    Raises:
        ValueError: when an argument is invalid.
    """
    modality = _check_modality(modality)
    anatomy = generate_anatomy(
        num_samples, image_size=image_size, spatial_dims=spatial_dims, seed=seed, findings=findings
    )
    return PhantomDataset(
        images=render(anatomy, modality, seed=seed),
        labels=anatomy.labels,
        masks=anatomy.tissue,
        modality=modality,
        anatomy=anatomy,
    )


def make_coregistered_pair(
    num_samples: int,
    modalities: Sequence[str] = ("MR-T1", "PET"),
    *,
    image_size: int = 64,
    spatial_dims: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, PhantomAnatomy]:
    """The same anatomies rendered through two modalities, voxel-aligned (the fusion task's input).

    Args:
        num_samples: number of anatomies (>= 1).
        modalities: two distinct entries of :data:`MODALITIES`.
        image_size: size of every spatial axis (>= 16).
        spatial_dims: 2 or 3.
        seed: seeds the anatomy and both scanners.

    Returns:
        ``(images_a, images_b, anatomy)`` with ``images_*`` float32 ``(N, C, *S)`` in [0, 1].

    Raises:
        ValueError: when an argument is invalid.
    """
    if isinstance(modalities, str) or len(modalities) != 2:
        raise ValueError(f"modalities={modalities!r} must name exactly two modalities.")
    first, second = (_check_modality(m) for m in modalities)
    if first == second:
        raise ValueError(f"modalities={tuple(modalities)!r} must be two different modalities.")
    anatomy = generate_anatomy(num_samples, image_size=image_size, spatial_dims=spatial_dims, seed=seed)
    return render(anatomy, first, seed=seed), render(anatomy, second, seed=seed), anatomy


def degrade(
    images: np.ndarray,
    scale: int,
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
    noise_std: float = 0.01,
) -> np.ndarray:
    """Low-resolution version of high-resolution images (the super-resolution task's input).

    The degradation is: Gaussian blur with ``blur_sigma`` HR pixels (default ``0.5 * scale``), area
    (box) downsampling by ``scale`` on every spatial axis, additive Gaussian noise of ``noise_std``, clip to
    [0, 1]. Blur and area averaging are one separable linear map per axis.

    Args:
        images: float ``(N, C, *S)`` HR images, 2 or 3 spatial axes, every axis divisible by ``scale``.
        scale: integer downsampling factor (>= 1).
        seed: non-negative seed of the noise.
        blur_sigma: Gaussian sigma in HR pixels (>= 0); ``None`` for ``0.5 * scale``.
        noise_std: standard deviation of the added noise (>= 0).

    Returns:
        float32 ``(N, C, *S // scale)``.

    Raises:
        ValueError: when an argument is invalid.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim not in (4, 5):
        raise ValueError(f"images.shape={x.shape} must be (N, C, H, W) or (N, C, D, H, W).")
    scale = _check_int("scale", scale, 1)
    if any(s % scale for s in x.shape[2:]):
        raise ValueError(f"scale={scale} must divide every spatial size of images.shape={x.shape}.")
    sigma = 0.5 * scale if blur_sigma is None else float(blur_sigma)
    if not sigma >= 0:
        raise ValueError(f"blur_sigma={blur_sigma!r} must be >= 0.")
    if not float(noise_std) >= 0:
        raise ValueError(f"noise_std={noise_std!r} must be >= 0.")
    rng = _rng(seed, 0xDE6)
    out = x
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        mat = _gaussian_matrix(n, sigma) @ _area_matrix(n, n // scale)
        out = _apply_axis(out, mat, axis)
    if noise_std > 0:
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Visual question answering
# ----------------------------------------------------------------------------------------------------------

MODALITY_ANSWERS = {
    "CT": "ct",
    "MR-T1": "t1-weighted mri",
    "MR-T2": "t2-weighted mri",
    "PET": "pet",
    "XRAY": "x-ray",
    "US": "ultrasound",
    "PATHOLOGY": "pathology",
}
_APPEARANCE_WORDS = {  # (brighter / denser, darker / lighter, similar)
    "CT": ("hyperdense", "hypodense", "isodense"),
    "MR-T1": ("hyperintense", "hypointense", "isointense"),
    "MR-T2": ("hyperintense", "hypointense", "isointense"),
    "PET": ("increased uptake", "decreased uptake", "similar uptake"),
    "XRAY": ("radiopaque", "radiolucent", "not distinguishable"),
    "US": ("hyperechoic", "hypoechoic", "isoechoic"),
    "PATHOLOGY": ("hypercellular", "hypocellular", "normocellular"),
}


def appearance_answer(modality: str, finding: int) -> str:
    """How the lesion body compares with the liver in ``modality``, from the property tables (no noise)."""
    up, down, same = _APPEARANCE_WORDS[modality]
    key, threshold = {
        "CT": ("hu", 8.0),
        "MR-T1": ("MR-T1", 0.15),
        "MR-T2": ("MR-T2", 0.15),
        "PET": ("suv", 0.25),
        "XRAY": ("hu", 300.0),
        "US": ("echo", 0.1),
        "PATHOLOGY": ("nuclei", 0.5),
    }[modality]
    lut, solid, _ = _TABLES[key]
    liver, lesion = float(lut[_LIVER]), float(solid[finding])
    diff = lesion - liver
    if modality in ("MR-T1", "MR-T2", "PET", "PATHOLOGY"):  # relative contrast
        diff /= max(liver, 1e-6)
    if modality == "US" and lesion < 0.05:
        return "anechoic"
    if diff > threshold:
        return up
    if diff < -threshold:
        return down
    return same


def _size_word(radius_px: float, size: int) -> str:
    r = radius_px / (size / 2.0)
    return "small" if r < 0.07 else "medium" if r < 0.14 else "large"


def _location_word(centre: np.ndarray, size: int) -> str:
    y, x = float(centre[-2]), float(centre[-1])
    mid = (size - 1) / 2.0
    return f"{'upper' if y < mid else 'lower'} {'left' if x < mid else 'right'}"


def make_vqa_pairs(anatomy: PhantomAnatomy, modality: str, *, seed: int = 0) -> list[dict]:
    """Question-answer pairs about each image, answered from the ground truth.

    Every sample gets (``question_type``: answer): ``"modality"`` (e.g. ``"ct"``), ``"presence"``
    (``"yes"`` iff the finding is not ``"normal"``), ``"abnormality"`` (finding name with spaces, or
    ``"normal"``), ``"finding_presence"`` (yes/no about a named finding, the true one half of the time),
    ``"count"`` (number of foci, ``"0"`` when normal); abnormal samples also get ``"location"`` (image
    quadrant of the lesion centroid, e.g. ``"upper left"``), ``"size"`` (``"small"``/``"medium"``/``"large"``
    from the focus equivalent radius relative to the half field: < 0.07, < 0.14, else) and ``"appearance"``
    (modality-specific words, e.g. CT ``"hypodense"``, US ``"anechoic"``, PET ``"increased uptake"``).
    Yes/no questions are ``"closed"``, the others ``"open"``.

    Args:
        anatomy: ground truth from :func:`generate_anatomy`.
        modality: the modality the images were rendered through.
        seed: non-negative seed of the question wording and of the named finding in closed questions.

    Returns:
        a list of dicts with keys ``index``, ``question``, ``answer``, ``answer_type``, ``question_type``.

    Raises:
        ValueError: for an unknown modality or a negative seed.
    """
    modality = _check_modality(modality)
    rng = _rng(seed, 0x7A0)
    size = anatomy.image_size
    names = [f.replace("_", " ") for f in FINDINGS]
    pairs: list[dict] = []

    def add(i, qtype, question, answer):
        closed = answer in ("yes", "no")
        pairs.append(
            dict(
                index=i,
                question=question,
                answer=answer,
                answer_type="closed" if closed else "open",
                question_type=qtype,
            )
        )

    for i in range(anatomy.num_samples):
        label = int(anatomy.labels[i])
        abnormal = label != 0
        add(i, "modality", "What imaging modality is shown?", MODALITY_ANSWERS[modality])
        presence_q = ("Is there a lesion in the liver?", "Is any abnormality present?")[int(rng.integers(2))]
        add(i, "presence", presence_q, "yes" if abnormal else "no")
        add(i, "abnormality", "What is the main finding?", names[label])
        asked = label if (abnormal and rng.random() < 0.5) else int(rng.integers(1, len(FINDINGS)))
        article = "an" if names[asked][0] in "aeiou" else "a"
        question = f"Does the image show {article} {names[asked]}?"
        add(i, "finding_presence", question, "yes" if asked == label else "no")
        add(i, "count", "How many lesions are there?", str(int(anatomy.lesion_count[i])))
        if abnormal:
            add(i, "location", "In which quadrant of the image is the lesion?",
                _location_word(anatomy.lesion_centre[i], size))  # fmt: skip
            add(i, "size", "How large is the lesion?", _size_word(float(anatomy.lesion_radius[i]), size))
            add(i, "appearance", "How does the lesion appear compared with the surrounding liver?",
                appearance_answer(modality, label))  # fmt: skip
    return pairs
