"""Super-resolution sites from a folder of real images: HR tiles per site, one source (modality) per site.

``data_dir`` is a folder of per-modality image folders (as ``/work/shared/data/real/super_resolution``), one
image folder, or several folders joined by ``os.pathsep``; each image folder is one source, named by the
folder (the modality). Every file below a source folder that :func:`~omnifm_monai.data.image_io.image_reader_kind`
reads (PNG/JPEG/TIFF/BMP, NIfTI middle slice, DICOM) is one image, read by the project's image reader (scaled
to [0, 1], 16-bit precision kept).

Rules (``cross_modality_hard``):

- sites: site ``i`` (0-based) holds source ``i % S`` of the ``S`` sources in sorted folder-name order (the
  first ``num_clients`` sources when there are fewer sites); a source with several sites deals its groups
  (a seeded permutation, equal shares) to them;
- groups: a patient: images whose ``metadata.json`` entry names one CBIS-DDSM patient (``P_00173``) are one
  group; every other image is its own group (so the 35 Colin27 slices, one subject, and the 27 InVesalius
  slices, one head, are split slice by slice);
- splits of a site: >= 3 groups: whole groups (seeded, 20 % val and 20 % test, at least one each); 2 groups
  with >= 3 images: one group (seeded, one with >= 2 images left over) is train, the other's images are cut
  into val (first half) and test; 1 group with >= 3 images: whole images; <= 2 images: each image's rows
  are cut into bands (top 60 % train, next 20 % val, last 20 % test) and tiles are taken inside a band only,
  so the splits are disjoint regions of the same images;
- tiles: ``image_size`` px squares every ``stride`` px (default ``image_size``: non-overlapping) inside the
  image or band; a tile is background and skipped unless at least :data:`MIN_FOREGROUND_FRACTION` of its
  pixels exceed :data:`FOREGROUND_LEVEL` (of the image's [0, 1] range);
- precision: uint16 HR tiles (a 16-bit PNG, DICOM or NIfTI keeps its precision), uint8 when every file of
  the source is an 8-bit image;
- ``samples_per_client``: ``None``/0: every tile; ``k > 0``: at most ``k`` training tiles per site (seeded).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.base import check_scenario_and_clients, equal_shares, per_split, sites_per_source
from omnifm_monai.data.federation.super_resolution import SuperResolutionFederation
from omnifm_monai.data.image_io import find_input_files, fix_channels, image_reader_kind, shared_image_reader
from omnifm_monai.data.site_archive import SPLITS
from omnifm_monai.data.super_resolution import SuperResolutionData

__all__ = [
    "FOREGROUND_LEVEL",
    "MIN_FOREGROUND_FRACTION",
    "RealSuperResolutionFederation",
    "SourceImage",
    "image_tiles",
    "read_source",
    "source_folders",
    "super_resolution_sites",
]

logger = logging.getLogger(__name__)

FOREGROUND_LEVEL = 0.05
"""Intensity (of the image's [0, 1] range) above which a pixel is foreground."""

MIN_FOREGROUND_FRACTION = 0.25
"""Share of a tile's pixels that must be foreground for the tile to be kept."""

_PATIENT = re.compile(r"P_\d+")  # CBIS-DDSM patient id in a metadata.json note
_EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr")


@dataclass(frozen=True)
class SourceImage:
    """One image of a source: its file, patient group and float ``(C, H, W)`` pixels in [0, 1]."""

    path: Path
    group: str
    pixels: np.ndarray  # (C, H, W) float32 in [0, 1]


@dataclass(frozen=True)
class RealSuperResolutionFederation(SuperResolutionFederation):
    """A super-resolution federation built from real image folders; ``layouts`` says, per site, the split rule
    and which images each split holds."""

    data_dir: str = ""
    layouts: tuple[dict, ...] = ()
    note: str = ""

    summary_headers = ("site", "modality", "source", "split rule", "images train/val/test", "tiles train/val/test")

    def summary_title(self) -> str:
        """Scenario, seed, sites, the folder and (when sources were left out) which."""
        title = (
            f"Super-resolution federation '{self.scenario}' (seed {self.seed}) from {self.data_dir}: "
            f"{self.num_clients} sites"
        )
        return f"{title}; {self.note}" if self.note else title

    def summary_row(self, client: SuperResolutionData) -> tuple[str, ...]:
        """Site, modality, source, split rule, images and tiles per split."""
        layout = self.layouts[[c.name for c in self.clients].index(client.name)]
        images = per_split(lambda s: len(layout["images"][s]))
        return client.name, client.modality, client.source, layout["rule"], images, per_split(client.num_samples)


def source_folders(data_dir: str | os.PathLike) -> list[Path]:
    """The source folders of ``data_dir`` (see the module docstring), sorted by folder name.

    Raises:
        FileNotFoundError: when a folder does not exist or none holds an image file.
    """
    sources = []
    for part in os.fspath(data_dir).split(os.pathsep):
        folder = Path(part).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data_dir '{folder}' is not a folder of image folders.")
        if any(image_reader_kind(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            sources.append(folder)  # one image folder
        else:
            sources += [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    sources = [s for s in sources if _image_files(s)]
    if not sources:
        raise FileNotFoundError(
            f"data_dir '{os.fspath(data_dir)}' holds no folder of PNG/JPEG/TIFF/BMP, NIfTI or DICOM images."
        )
    return sorted(sources, key=lambda s: (s.name, str(s)))


def _image_files(folder: Path) -> list[Path]:
    """Every image file (or DICOM series folder) below ``folder``, sorted."""
    return [p for p in find_input_files(folder) if image_reader_kind(p) is not None]


def _patient_groups(folder: Path) -> dict[str, str]:
    """File name -> patient id, from the CBIS-DDSM ids in ``folder/metadata.json`` notes (empty if none)."""
    meta = folder / "metadata.json"
    if not meta.is_file():
        return {}
    groups = {}
    for entry in json.loads(meta.read_text()):
        found = _PATIENT.search(str(entry.get("notes", "")))
        if found and "file" in entry:
            groups[entry["file"]] = found.group(0)
    return groups


def _is_eight_bit(path: Path) -> bool:
    """Whether ``path`` is an 8-bit PIL image (its header only)."""
    if image_reader_kind(path) != "pil":
        return False
    from PIL import Image

    with Image.open(path) as image:
        return image.mode in _EIGHT_BIT_MODES


def read_source(folder: Path) -> tuple[list[SourceImage], np.dtype]:
    """A source's images (sorted by file), each float ``(C, H, W)`` in [0, 1], and the HR dtype to store.

    Raises:
        ValueError: when no image of the folder can be read.
    """
    groups = _patient_groups(folder)
    images = []
    files = _image_files(folder)
    for path in files:
        try:
            pixels = shared_image_reader()(path, image_reader_kind(path))  # (C, H, W) in [0, 1]
        except Exception as e:  # one bad file must not stop the source
            logger.warning("Skipping unreadable image '%s': %s: %s", path, type(e).__name__, e)
            continue
        channels = 1 if pixels.shape[0] in (1, 2) else 3
        pixels = fix_channels(pixels[None], channels)[0]  # alpha dropped: (1 or 3, H, W)
        images.append(SourceImage(path, groups.get(path.name, path.name), pixels))
    if not images:
        raise ValueError(f"'{folder}' holds no readable image ({len(files)} file(s) tried).")
    dtype = np.uint8 if all(_is_eight_bit(p) for p in files) else np.uint16
    return images, np.dtype(dtype)


def image_tiles(pixels: np.ndarray, size: int, stride: int, rows: tuple[int, int] | None = None) -> np.ndarray:
    """The foreground ``size`` px tiles of ``pixels`` (C, H, W), every ``stride`` px, inside ``rows``
    (top, bottom) when given; -> (n, C, size, size), row-major."""
    top, bottom = rows or (0, pixels.shape[1])
    width = pixels.shape[2]
    tiles = [
        pixels[:, r : r + size, c : c + size]
        for r in range(top, bottom - size + 1, stride)
        for c in range(0, width - size + 1, stride)
    ]
    kept = [t for t in tiles if (t.max(axis=0) > FOREGROUND_LEVEL).mean() >= MIN_FOREGROUND_FRACTION]
    return np.stack(kept) if kept else np.zeros((0, pixels.shape[0], size, size), dtype=np.float32)


def _cut(items: list) -> dict[str, list]:
    """``items`` (>= 3) into train/val/test: 20 % val and 20 % test (at least one each), the rest train."""
    n_val = n_test = max(1, round(0.2 * len(items)))
    cut = len(items) - n_val - n_test
    return {"train": items[:cut], "val": items[cut : cut + n_val], "test": items[cut + n_val :]}


def _site_layout(images: list[SourceImage], seed: int, site: int) -> dict:
    """One site's split rule (``"rule"``) and split -> [(image index, row band or None)] (``"images"``)."""
    rng = np.random.default_rng([seed, site, 0x5B])
    groups = sorted({im.group for im in images})
    members = {g: [i for i, im in enumerate(images) if im.group == g] for g in groups}
    order = [groups[i] for i in rng.permutation(len(groups))]
    if len(images) <= 2:  # row bands of every image: disjoint regions
        bands = {}
        for k, s in enumerate(SPLITS):
            bands[s] = []
            for i, im in enumerate(images):
                height = im.pixels.shape[1]
                cuts = [0, round(0.6 * height), round(0.8 * height), height]
                bands[s].append((i, (cuts[k], cuts[k + 1])))
        return {"rule": "by region (row bands 60/20/20)", "images": bands}
    if len(order) >= 3:  # whole groups
        unit = "patient" if any(len(m) > 1 for m in members.values()) else "image"
        rule, by_split = f"by {unit}", {s: [i for g in gs for i in members[g]] for s, gs in _cut(order).items()}
    elif len(order) == 2:  # one group trains, the other's images (>= 2) are cut into val and test
        if len(members[order[1]]) < 2:
            order.reverse()
        held = [members[order[1]][i] for i in rng.permutation(len(members[order[1]]))]
        rule = f"{order[0]} train, {order[1]} val/test"
        by_split = {"train": members[order[0]], "val": held[: len(held) // 2], "test": held[len(held) // 2 :]}
    else:  # one patient, >= 3 images: whole images
        rule, by_split = "by image (one patient)", _cut([int(i) for i in rng.permutation(len(images))])
    return {"rule": rule, "images": {s: [(i, None) for i in sorted(by_split[s])] for s in SPLITS}}


def super_resolution_sites(
    scenario: str,
    num_clients: int,
    *,
    seed: int,
    data_dir: str | os.PathLike,
    image_size: int,
    samples_per_client: int | None,
    stride: int | None = None,
) -> RealSuperResolutionFederation:
    """The real-data super-resolution federation of ``data_dir`` (rules in the module docstring).

    Raises:
        ValueError: for a scenario other than ``cross_modality_hard``, a bad size or cap, a source with
            fewer groups than sites, or a site split left without tiles (the message names it).
        FileNotFoundError: when ``data_dir`` holds no image folder.
    """
    check_scenario_and_clients(scenario, ("cross_modality_hard",), num_clients, task="real-data super-resolution")
    stride = stride or image_size
    if image_size < 8 or stride < 1:
        raise ValueError(f"image_size={image_size} must be >= 8 and stride={stride} >= 1.")
    if samples_per_client is not None and samples_per_client < 0:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 0 (0: every tile).")
    sources = source_folders(data_dir)
    used = sources[:num_clients]
    note = f"first {len(used)} of {len(sources)} sources" if len(used) < len(sources) else ""
    clients, layouts = [], []
    for j, (folder, sites) in enumerate(zip(used, sites_per_source(num_clients, len(used)))):
        images, dtype = read_source(folder)
        groups = sorted({im.group for im in images})
        if len(groups) < len(sites):
            raise ValueError(
                f"'{folder}' has {len(groups)} patient/image group(s); cannot split it over {len(sites)} sites."
            )
        order = [groups[i] for i in np.random.default_rng([seed, j, 0x51]).permutation(len(groups))]
        shares = np.split(np.array(order, dtype=object), np.cumsum(equal_shares(len(groups), len(sites)))[:-1])
        for site, share in zip(sites, shares):
            own = [im for im in images if im.group in set(share)]
            layout = _site_layout(own, seed, site)
            cap = samples_per_client or 0
            splits = _site_splits(own, layout, image_size, stride, cap, [seed, site, 0xCA], dtype, f"site-{site + 1}")
            layout["images"] = {s: sorted({own[i].path.name for i, _ in v}) for s, v in layout["images"].items()}
            clients.append((site, SuperResolutionData(f"site-{site + 1}", folder.name, splits, source=folder.name)))
            layouts.append((site, layout))
    clients.sort(key=lambda c: c[0])
    layouts.sort(key=lambda c: c[0])
    return RealSuperResolutionFederation(
        scenario=scenario,
        seed=seed,
        clients=tuple(c for _, c in clients),
        data_dir=os.fspath(data_dir),
        layouts=tuple(lay for _, lay in layouts),
        note=note,
    )


def _site_splits(
    images: list[SourceImage],
    layout: dict,
    image_size: int,
    stride: int,
    cap: int,
    cap_seed: list[int],
    dtype: np.dtype,
    site: str,
) -> dict[str, np.ndarray]:
    """A site's stored HR tiles per split from its layout; the training split capped at ``cap`` (0: none).

    Raises:
        ValueError: when a split holds no foreground tile.
    """
    splits = {}
    for s in SPLITS:
        parts = [image_tiles(images[i].pixels, image_size, stride, band) for i, band in layout["images"][s]]
        tiles = np.concatenate(parts)  # (n, C, S, S)
        if not len(tiles):
            folder = images[0].path.parent
            raise ValueError(f"{site} ('{folder}'): no foreground {image_size} px tile in its {s} split.")
        if s == "train" and cap and len(tiles) > cap:
            tiles = tiles[np.sort(np.random.default_rng(cap_seed).choice(len(tiles), cap, replace=False))]
        splits[s] = _to_stored(tiles, dtype)
    return splits


def _to_stored(tiles: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float tiles (n, C, S, S) in [0, 1] -> ``dtype`` (n, S, S) (gray) or (n, S, S, 3) (RGB)."""
    peak = float(np.iinfo(dtype).max)
    stored = np.rint(np.clip(tiles, 0.0, 1.0) * peak).astype(dtype)  # (n, C, S, S)
    return stored[:, 0] if stored.shape[1] == 1 else np.ascontiguousarray(stored.transpose(0, 2, 3, 1))
