"""Fusion sites from a folder of co-registered volumes listed in ``pairs.json`` (one pair = one source).

Layout (``/work/shared/data/real/fusion`` is one)::

    <dir>/pairs.json        {"pairs": [{"name": "T1-T2", "fixed": "avg152T1.nii.gz", "moving": "avg152T2.nii.gz",
                                        "modalities": ["MR T1", "MR T2"]}, ...], "note": "..."}
    <dir>/<volume>.nii.gz   3D volumes; the two of a pair on one grid (same shape and affine)

``name`` and ``modalities`` are optional (default: the file stems). Rules, in this order:

- Sites: site ``i`` (0-based) holds pair ``i % P`` of the first ``P = min(num_clients, len(pairs))`` pairs,
  in ``pairs.json`` order. Sites sharing a pair split its kept slices into contiguous z blocks (the
  lowest site number gets the lowest block), so no slice is at two sites.
- Reading: each volume through MONAI ``LoadImage`` with ``NibabelReader`` (:func:`read_volume`), as
  stored (no reorientation), min-max scaled to [0, 1] per volume (as :func:`read_fusion_source` does).
- Kept slices: an axial slice (last voxel axis) is kept when at least :data:`MIN_SLICE_SIGNAL` (5 %) of
  its voxels lie in the fixed volume's mask, the voxels above :data:`MASK_LEVEL` (20 %) of its range.
- Images: each slice ``(X, Y)`` is zero padded symmetrically to a square ``max(X, Y)`` (aspect kept, no
  crop) and resized to ``image_size`` (area when shrinking), then stored as uint8.
- Splits: contiguous slabs of a site's kept slices in z order: the lower 60 % train, the next 20 % val,
  the top 20 % test (:func:`split_cuts`). Adjacent slices are strongly correlated, so the slices on either
  side of a slab boundary are near-duplicates: val/test scores are optimistic, not held-out subjects.
- ``samples_per_client`` k > 0: k training slices drawn without replacement (seeded), kept in z order;
  val and test are never capped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.transforms import ScaleIntensity, SpatialPad
from monai.utils import convert_to_numpy

from omnifm_monai.data.federation.base import sites_per_source
from omnifm_monai.data.fusion import FusionData
from omnifm_monai.data.image_io import read_volume, resize_images, to_uint8
from omnifm_monai.data.site_archive import SPLITS, split_cuts

__all__ = [
    "PAIRS_FILE",
    "MASK_LEVEL",
    "MIN_SLICE_SIGNAL",
    "VolumePair",
    "read_pairs_json",
    "kept_slices",
    "folder_sites",
]

PAIRS_FILE = "pairs.json"
"""The file of a fusion folder that lists its co-registered volume pairs."""

MASK_LEVEL = 0.2
"""Fixed-volume mask: voxels above this fraction of the (min-max scaled) intensity range."""

MIN_SLICE_SIGNAL = 0.05
"""An axial slice is kept when at least this fraction of its voxels lies in the fixed volume's mask."""


@dataclass(frozen=True)
class VolumePair:
    """One ``pairs.json`` entry: its name, the two volume files and their modality names."""

    name: str
    fixed: Path
    moving: Path
    modalities: tuple[str, str]


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def read_pairs_json(folder: Path) -> tuple[list[VolumePair], str]:
    """The pairs of ``folder/pairs.json`` (files checked to exist) and its ``note`` (``""`` when absent).

    Raises:
        FileNotFoundError: when ``folder`` or ``pairs.json`` or a file an entry names does not exist.
        ValueError: when ``pairs.json`` is not JSON with a non-empty ``"pairs"`` list, or an entry lacks
            ``"fixed"``/``"moving"`` (the message names ``pairs.json`` and the entry).
    """
    path = folder / PAIRS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data_dir '{folder}' is not a folder; expected co-registered volumes and {PAIRS_FILE}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist; a fusion folder lists its co-registered volume pairs there.")
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"'{path}' is not readable JSON: {e}") from e
    entries = content.get("pairs") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'\'{path}\' needs a non-empty list under "pairs" of {{"fixed": file, "moving": file}}.')
    pairs = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"'{path}' pairs[{k}] is a {type(entry).__name__}; expected an object with fixed/moving.")
        where = f"'{path}' pairs[{k}] ({entry.get('name', 'unnamed')!r})"
        missing = [key for key in ("fixed", "moving") if not isinstance(entry.get(key), str) or not entry[key]]
        if missing:
            raise ValueError(f"{where} lacks {missing}; expected the file names of two co-registered volumes.")
        fixed, moving = folder / entry["fixed"], folder / entry["moving"]
        for file in (fixed, moving):
            if not file.is_file():
                raise FileNotFoundError(f"{where} names '{file}', which does not exist.")
        modalities = entry.get("modalities")
        if not (isinstance(modalities, list) and len(modalities) == 2 and all(isinstance(m, str) for m in modalities)):
            modalities = [_stem(fixed), _stem(moving)]
        name = str(entry.get("name") or f"{_stem(fixed)}-{_stem(moving)}")
        pairs.append(VolumePair(name, fixed, moving, (modalities[0], modalities[1])))
    return pairs, str(content.get("note", ""))


def _read_scaled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume -> (float32 (X, Y, Z) min-max scaled to [0, 1], its 4 x 4 affine)."""
    volume = read_volume(path, "NibabelReader")  # MetaTensor (X, Y, Z[, 1...]), as stored
    data = convert_to_numpy(volume, dtype=np.float32)
    data = data.reshape(data.shape[:3] + tuple(s for s in data.shape[3:] if s != 1))  # drop unit axes
    if data.ndim != 3 or not np.isfinite(data).all():
        raise ValueError(f"'{path}' holds a {data.shape} array; expected a finite 3D volume.")
    affine = convert_to_numpy(volume.affine, dtype=np.float64)  # (4, 4)
    return convert_to_numpy(ScaleIntensity(minv=0.0, maxv=1.0)(data), dtype=np.float32), affine


def _pair_volumes(pair: VolumePair, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fixed and moving volumes of ``pair`` (each read once per build), checked to share one grid."""
    for path in (pair.fixed, pair.moving):
        if path not in cache:
            cache[path] = _read_scaled(path)
    (fixed, affine_f), (moving, affine_m) = cache[pair.fixed], cache[pair.moving]
    if fixed.shape != moving.shape or not np.allclose(affine_f, affine_m, atol=1e-4):
        raise ValueError(
            f"pair {pair.name!r}: '{pair.fixed}' {fixed.shape} and '{pair.moving}' {moving.shape} differ in shape or "
            "affine; the two volumes of a pair must be co-registered on one grid."
        )
    return fixed, moving


def kept_slices(fixed: np.ndarray) -> np.ndarray:
    """Axial slices of the fixed volume ``(X, Y, Z)`` in [0, 1] with enough signal -> sorted int ``(n,)``."""
    in_mask = (fixed > MASK_LEVEL).mean(axis=(0, 1))  # (Z,) fraction of each slice inside the mask
    return np.flatnonzero(in_mask >= MIN_SLICE_SIGNAL)


def _axial_pairs(fixed: np.ndarray, moving: np.ndarray, z: np.ndarray, image_size: int) -> np.ndarray:
    """Slices ``z`` of both volumes -> uint8 ``(n, 2, S, S)``: padded to a square, then resized."""
    pairs = np.stack([fixed[:, :, z], moving[:, :, z]]).transpose(3, 0, 1, 2)  # (n, 2, X, Y)
    n, _, x, y = pairs.shape
    m = max(x, y)
    square = convert_to_numpy(SpatialPad((m, m))(pairs.reshape(n * 2, x, y)), dtype=np.float32)  # (2n, m, m)
    return to_uint8(resize_images(square.reshape(n, 2, m, m), image_size), channels_last=False)


def _site_splits(block: np.ndarray, site: int, seed: int, cap: int | None) -> dict[str, np.ndarray]:
    """Positions in a site's z block per split: contiguous 60/20/20 slabs, the train slab capped (seeded)."""
    index = dict(zip(SPLITS, np.split(np.arange(len(block)), split_cuts(len(block)))))
    if cap and cap < len(index["train"]):
        chosen = np.random.default_rng([seed, site, 0xCA]).choice(index["train"], cap, replace=False)
        index["train"] = np.sort(chosen)
    return index


def folder_sites(
    num_clients: int, seed: int, folder: Path, image_size: int, samples_per_client: int | None
) -> tuple[list[FusionData], list[str], int, str]:
    """The sites of a fusion folder (rules in the module docstring).

    Returns:
        the sites (``site-1`` ..), each site's pair name, the number of pairs in ``pairs.json`` and its note.

    Raises:
        FileNotFoundError, ValueError: for a bad folder, ``pairs.json``, volume or a site with too few slices.
    """
    pairs, note = read_pairs_json(folder)
    used = pairs[:num_clients]
    cache: dict = {}
    sites: list[FusionData | None] = [None] * num_clients
    for pair, held_by in zip(used, sites_per_source(num_clients, len(used))):
        fixed, moving = _pair_volumes(pair, cache)
        for site, block in zip(held_by, np.array_split(kept_slices(fixed), len(held_by))):
            index = _site_splits(block, site, seed, samples_per_client)
            if any(len(i) == 0 for i in index.values()):
                raise ValueError(
                    f"pair {pair.name!r} of '{folder / PAIRS_FILE}': site-{site + 1} gets {len(block)} kept slice(s); "
                    "at least 4 are needed for non-empty train/val/test (use fewer sites)."
                )
            images = _axial_pairs(fixed, moving, block, image_size)  # (n, 2, S, S) uint8
            sites[site] = FusionData(
                f"site-{site + 1}",
                "+".join(pair.modalities),
                {s: images[i] for s, i in index.items()},
                source=f"{folder.name}/{PAIRS_FILE} {pair.name}: {pair.fixed.name} + {pair.moving.name}",
                slices={s: block[i] for s, i in index.items()},
            )
    return sites, [used[i % len(used)].name for i in range(num_clients)], len(pairs), note
