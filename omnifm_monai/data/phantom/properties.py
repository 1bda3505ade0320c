"""The phantom's vocabulary: modalities, findings, tissues, their physical properties and the argument checks."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MODALITIES",
    "FINDINGS",
    "TISSUES",
    "TISSUE_PROPERTIES",
    "LESION_PROPERTIES",
    "MAX_LESION_FOCI",
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

_TARGET_CHUNK_ELEMENTS = 1 << 16

# Scanner constants.


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
