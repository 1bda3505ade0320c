"""The real segmentation federation: sites of 2D axial slices from Medical Segmentation Decathlon folders.

``data_dir`` is one MSD folder (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``), a folder of MSD folders,
or several of either joined by ``os.pathsep`` (an entry may be a glob, e.g. ``.../segmentation/pyradiomics_*``).
Every source is read with the segmentation loader's own pieces (:mod:`omnifm_monai.data.segmentation`:
MONAI's ``load_decathlon_datalist``, ``LoadImage``, RAS, [0, 1] per volume, in-plane resize to
``image_size``); the builder is 2D only (the bundle's ``spatial_dims=2``).

Rules:

- **One label space.** Mask value ``i`` names the same class at every site. A source whose only foreground
  label is named like a lesion (:data:`LESION_NAMES`: tumour, tumor, lesion, ...) is read as
  ``("background", "lesion")``; other sources keep their ``dataset.json`` ``"labels"`` (label 0 is always
  ``"background"``). Sources with different label spaces are refused in one line that names them.
- **Slices.** Every axial slice with foreground and a seeded sample of the empty ones
  (:data:`EMPTY_SLICE_FRACTION` of the foreground count, at least one), as the bundle's own 2D loader, and
  more empty ones while a volume keeps fewer than :data:`MIN_SLAB_SLICES`.
- **Sites** (``cross_modality_hard``): site ``i`` holds source ``i % S`` of the sorted sources (the first
  ``num_clients`` only when there are fewer sites than sources). A source's volume groups (volumes on one
  in-plane grid whose z ranges overlap are one scan, e.g. ``totalseg_ct_001`` and its sub-volume ``_002``,
  and stay together) go whole to its sites in sorted order; with fewer groups than sites every group is cut
  into contiguous z parts, one per site.
- **Splits.** A site with >= 3 pieces (groups or parts) splits them 60/20/20 by a seeded permutation (volume
  split); with fewer, every piece is cut into contiguous z slabs of its kept slices (inferior 60 % train,
  20 % val, superior 20 % test; slices at one z position stay together: slab split), cut separately among
  the positions with foreground and those without, so that val and test hold foreground too.
- ``samples_per_client`` k > 0 caps each site's training slices at k (seeded); None or 0 keeps all.

Every slice records its in-plane pixel size in mm on the resized grid (``<split>_spacing`` in the site
``.npz``), so the task's test evaluator reports HD95 in mm.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.base import check_scenario_and_clients, per_split, sites_per_source
from omnifm_monai.data.federation.segmentation import SegmentationFederation
from omnifm_monai.data.image_io import to_uint8
from omnifm_monai.data.segmentation import (
    SegmentationData,
    carve_splits,
    case_loader,
    decathlon_labelled_cases,
    kept_slices,
    read_case_with_affine,
    segmentation_class_names,
    slice_spacing,
)
from omnifm_monai.data.site_archive import SPLITS, split_cuts

__all__ = [
    "EMPTY_SLICE_FRACTION",
    "LESION_NAMES",
    "MIN_SLAB_SLICES",
    "REAL_SEGMENTATION_SCENARIOS",
    "RealSegmentationFederation",
    "SegmentationSource",
    "find_segmentation_sources",
    "real_segmentation_federation",
]

REAL_SEGMENTATION_SCENARIOS: tuple[str, ...] = ("cross_modality_hard",)
"""Real federations: one source per site (``iid`` would mix label-space-compatible sources at every site)."""

LESION_NAMES = frozenset({"tumour", "tumor", "lesion", "lesions", "mass", "nodule", "cancer"})
"""Names of a lone foreground label that mean one shared class, ``"lesion"``."""

EMPTY_SLICE_FRACTION = 0.25
"""Empty slices kept per slice with foreground (the bundle loader's ``empty_slice_fraction`` default)."""

MIN_SLAB_SLICES = 4
"""Slice positions a slab split needs: 2 train (BatchNorm needs two), 1 val, 1 test; a volume with fewer
foreground slices keeps more empty ones."""


@dataclass(frozen=True)
class SegmentationSource:
    """One MSD folder: its name, modality (``dataset.json`` ``"modality"``) and harmonised class names."""

    folder: Path
    modality: str
    class_names: tuple[str, ...]

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.folder.name


def _entries(data_dir: str | os.PathLike) -> list[Path]:
    """``data_dir`` split at ``os.pathsep``; glob entries expanded (sorted)."""
    paths = []
    for entry in os.fspath(data_dir).split(os.pathsep):
        entry = os.path.expanduser(entry.strip())
        if not entry:
            continue
        if glob.has_magic(entry):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise FileNotFoundError(f"data_dir entry '{entry}' matches no folder.")
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(entry))
    return paths


def _harmonised_names(folder: Path) -> tuple[str, ...]:
    names = ("background", *segmentation_class_names(folder)[1:])
    if len(names) == 2 and names[1].strip().lower() in LESION_NAMES:
        return ("background", "lesion")
    return names


def _modality(folder: Path) -> str:
    with open(folder / "dataset.json") as f:
        modality = json.load(f).get("modality", {})
    if isinstance(modality, dict) and modality:
        return "+".join(str(modality[k]) for k in sorted(modality, key=str))
    return str(modality) if modality else "unknown"


def _describe(names: tuple[str, ...]) -> str:
    return names[1] if len(names) == 2 else f"{len(names) - 1} classes {names[1]}..{names[-1]}"


def find_segmentation_sources(data_dir: str | os.PathLike) -> list[SegmentationSource]:
    """The MSD folders ``data_dir`` names, sorted by folder name, all with one label space.

    Raises:
        FileNotFoundError: an entry that does not exist.
        ValueError: an entry that is neither an MSD folder nor a folder of them, or sources whose label
            spaces differ (the message names them and how to pick one task's folders).
    """
    folders: dict[Path, None] = {}
    for path in _entries(data_dir):
        if not path.is_dir():
            raise FileNotFoundError(f"data_dir entry '{path}' is not a folder.")
        if (path / "dataset.json").is_file():
            folders[path] = None
            continue
        inner = sorted(p for p in path.iterdir() if (p / "dataset.json").is_file())
        if not inner:
            raise ValueError(
                f"data_dir entry '{path}' is neither an MSD folder (dataset.json, imagesTr/, labelsTr/) nor a "
                "folder of MSD folders."
            )
        folders.update(dict.fromkeys(inner))
    if not folders:
        raise ValueError(f"data_dir={os.fspath(data_dir)!r} names no folder.")
    ordered = sorted(folders, key=lambda p: (p.name, str(p)))
    sources = [SegmentationSource(f, _modality(f), _harmonised_names(f)) for f in ordered]
    spaces: dict[tuple[str, ...], list[SegmentationSource]] = {}
    for source in sources:
        spaces.setdefault(source.class_names, []).append(source)
    if len(spaces) > 1:
        groups = "; ".join(f"{_describe(k)}: {', '.join(s.name for s in v)}" for k, v in spaces.items())
        example = os.pathsep.join(str(s.folder) for s in next(iter(spaces.values())))
        raise ValueError(
            f"data_dir={os.fspath(data_dir)!r} mixes label spaces ({groups}); a federation has one: pass the "
            f"folders of one task joined by {os.pathsep!r}, e.g. {example!r}."
        )
    return sources


@dataclass(frozen=True)
class _Volume:
    """One case's kept slices: images uint8 (K, C, S, S), masks uint8 (K, S, S), z (K,) mm, spacing (2,) mm."""

    name: str
    images: np.ndarray
    masks: np.ndarray
    z: np.ndarray
    spacing: np.ndarray
    grid: tuple  # in-plane shape and affine rows, equal for volumes of one scan


def _read_volumes(source: SegmentationSource, image_size: int, seed: int) -> list[_Volume]:
    loader = case_loader(2, image_size)
    volumes = []
    for index, case in enumerate(decathlon_labelled_cases(source.folder)):
        try:
            image, mask, affine = read_case_with_affine(case, "NibabelReader", loader)  # (C, S, S, Z), (S, S, Z)
        except ValueError as e:
            raise ValueError(f"'{source.folder}': case '{case['image']}': {e}") from e
        if mask.max() >= len(source.class_names):
            raise ValueError(
                f"'{case['label']}' has label {mask.max()}, but '{source.folder / 'dataset.json'}' names "
                f"{len(source.class_names)} labels."
            )
        keep = kept_slices(mask, EMPTY_SLICE_FRACTION, np.random.default_rng([seed, index]), MIN_SLAB_SLICES)  # (K,)
        centre = np.array([(image.shape[1] - 1) / 2, (image.shape[2] - 1) / 2, 0.0, 1.0])
        z = np.array([affine[2] @ (centre + [0, 0, k, 0]) for k in keep])  # (K,) mm, RAS superior
        name = Path(case["image"]).name.split(".")[0]
        grid = (image.shape[1:3], tuple(np.round(affine[:2].ravel(), 3)))
        volumes.append(
            _Volume(
                name,
                to_uint8(np.moveaxis(image[..., keep], -1, 0), channels_last=False),  # (K, C, S, S)
                np.moveaxis(mask[..., keep], -1, 0).astype(np.uint8),  # (K, S, S)
                z,
                slice_spacing(affine),
                grid,
            )
        )
    if not volumes:
        raise ValueError(f"'{source.folder / 'dataset.json'}' lists no labelled case.")
    return volumes


def _scan_groups(volumes: list[_Volume]) -> list[list[_Volume]]:
    """Volumes on one in-plane grid whose z ranges overlap (one scan), joined transitively; sorted by name."""
    groups: list[list[_Volume]] = []
    for volume in sorted(volumes, key=lambda v: v.name):
        touching = [
            g
            for g in groups
            if any(o.grid == volume.grid and o.z.min() <= volume.z.max() and volume.z.min() <= o.z.max() for o in g)
        ]
        merged = [volume] + [v for g in touching for v in g]
        groups = [g for g in groups if all(g is not t for t in touching)] + [sorted(merged, key=lambda v: v.name)]
    return sorted(groups, key=lambda g: g[0].name)


@dataclass(frozen=True)
class _Piece:
    """What a site holds of one scan: its volumes' slices at the z positions ``z_values`` (sorted, mm)."""

    label: str
    volumes: tuple[_Volume, ...]
    z_values: np.ndarray


def _whole(group: list[_Volume]) -> _Piece:
    """A scan group as one piece: its volumes' names joined by ``+``, every z position (rounded to 0.01 mm)."""
    z_values = np.unique(np.round(np.concatenate([v.z for v in group]), 2))  # (P,) sorted
    return _Piece("+".join(v.name for v in group), tuple(group), z_values)


def _pieces_per_site(groups: list[list[_Volume]], num_sites: int) -> list[list[_Piece]]:
    """Whole groups in sorted order to each site when there are enough, else z part ``j`` of every group."""
    pieces = [_whole(g) for g in groups]
    if len(pieces) >= num_sites:
        return [[pieces[i] for i in share] for share in np.array_split(np.arange(len(pieces)), num_sites)]
    parts = [np.array_split(p.z_values, num_sites) for p in pieces]  # contiguous z parts of each group
    return [
        [_Piece(f"{p.label} z{j + 1}/{num_sites}", p.volumes, z[j]) for p, z in zip(pieces, parts)]
        for j in range(num_sites)
    ]


def _slab_cuts(n: int) -> list[int]:
    """60/20/20 cut points of ``n >= 4`` ordered positions: train at least two, val and test at least one."""
    train, val_end = split_cuts(n)
    train = min(max(train, 2), n - 2)
    return [train, min(max(val_end, train + 1), n - 1)]


def _slabs_with_foreground(piece: _Piece) -> dict[str, np.ndarray]:
    """A piece's z positions in contiguous 60/20/20 slabs, cut separately among the positions with foreground
    and those without, so that every split holds foreground when the piece has >= 3 such positions (a lesion
    spans a few slices: one slab of all positions can leave val or test without any)."""
    rounded = {v.name: np.round(v.z, 2) for v in piece.volumes}
    with_fg = np.array(
        [any(v.masks[rounded[v.name] == z].any() for v in piece.volumes) for z in piece.z_values], dtype=bool
    )  # (P,)
    slabs: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for positions in (piece.z_values[with_fg], piece.z_values[~with_fg]):
        n = len(positions)
        cuts = _slab_cuts(n) if n >= 4 else [1, 2] if n == 3 else [n, n]  # fewer than 3: all train
        for split, z in zip(SPLITS, np.split(positions, cuts)):
            slabs[split].append(z)
    out = {split: np.sort(np.concatenate(parts)) for split, parts in slabs.items()}
    if not all(len(out[s]) for s in SPLITS):  # too few of both kinds: one slab split of every position
        out = dict(zip(SPLITS, np.split(piece.z_values, _slab_cuts(len(piece.z_values)))))
    return out


def _site_data(
    site: str, source: SegmentationSource, pieces: list[_Piece], seed: int, site_index: int, cap: int | None
) -> SegmentationData:
    per_split: dict[str, list[tuple[_Piece, np.ndarray]]] = {s: [] for s in SPLITS}  # (piece, z positions)
    if len(pieces) >= len(SPLITS):  # volume split
        for split, chosen in carve_splits(pieces, SPLITS, [seed, site_index, 0x5E]).items():
            per_split[split] = [(p, p.z_values) for p in sorted(chosen, key=lambda p: p.label)]
    else:  # slab split
        for piece in pieces:
            if len(piece.z_values) < MIN_SLAB_SLICES:
                raise ValueError(
                    f"{site}: '{piece.label}' of '{source.folder}' has {len(piece.z_values)} slice position(s) "
                    f"with kept slices; a slab split needs >= {MIN_SLAB_SLICES}: use fewer sites."
                )
            for split, z in _slabs_with_foreground(piece).items():
                per_split[split].append((piece, z))
    splits, spacing, cases = {}, {}, {}
    for split in SPLITS:
        images, masks, mm = [], [], []
        for piece, z in per_split[split]:
            for volume in piece.volumes:
                rows = np.flatnonzero(np.isin(np.round(volume.z, 2), z))
                images.append(volume.images[rows])  # (k, C, S, S)
                masks.append(volume.masks[rows])  # (k, S, S)
                mm.append(np.repeat(volume.spacing[None], len(rows), axis=0))  # (k, 2)
        x, y, s = np.concatenate(images), np.concatenate(masks), np.concatenate(mm).astype(np.float32)
        if split == "train" and cap and len(x) > cap:
            rows = np.sort(np.random.default_rng([seed, site_index, 0xCA]).choice(len(x), cap, replace=False))
            x, y, s = x[rows], y[rows], s[rows]
        splits[split], spacing[split] = (x, y), s
        cases[split] = tuple(p.label for p, _ in per_split[split])
    return SegmentationData(site, source.modality, splits, source.class_names, source.name, spacing, cases)


@dataclass(frozen=True)
class RealSegmentationFederation(SegmentationFederation):
    """A segmentation federation of real MSD folders (``data_dir``): one source per site."""

    data_dir: str = ""
    left_out: tuple[str, ...] = ()

    summary_headers = (
        "site",
        "source",
        "modality",
        "split rule",
        "volumes: train / val / test",
        "slices train/val/test",
        "train fg %",
    )

    def summary_title(self) -> str:
        """Scenario, seed, folder, sites, the sources left out, the mask values' legend."""
        legend = ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        sources = len(dict.fromkeys(c.source for c in self.clients))
        skipped = f"; first {sources} sources only, left out: {', '.join(self.left_out)}" if self.left_out else ""
        return (
            f"Segmentation federation '{self.scenario}' (seed {self.seed}) of '{self.data_dir}': "
            f"{self.num_clients} sites on {sources} source{'s' if sources > 1 else ''}{skipped} ({legend})"
        )

    def summary_row(self, client: SegmentationData) -> tuple[str, ...]:
        """Site, source, modality, split rule, the pieces of each split, slices per split, train foreground."""
        held = [client.cases.get(s, ()) for s in SPLITS]
        pieces = len(dict.fromkeys(p for split in held for p in split))
        slab = all(set(h) == set(held[0]) for h in held)
        rule = f"{'slab' if slab else 'volume'} split: {pieces} volume{'s' if pieces > 1 else ''}"
        volumes = f"each split a z slab of {', '.join(held[0])}" if slab else " / ".join(", ".join(h) for h in held)
        masks = client.splits["train"][1]  # (N, S, S)
        fg = float((masks > 0).mean() * 100) if masks.size else 0.0
        return (
            client.name,
            client.source,
            client.modality,
            rule,
            volumes,
            per_split(client.num_samples),
            f"{fg:.1f}",
        )


def real_segmentation_federation(
    scenario: str,
    num_clients: int,
    data_dir: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> RealSegmentationFederation:
    """Sites ``site-1`` .. ``site-N`` of 2D axial slices from the MSD folders of ``data_dir`` (module docstring).

    Raises:
        ValueError: an unsupported scenario, fewer than 1 site, an image under 32 px, a negative
            ``samples_per_client``, sources with different label spaces, a source too small for its sites.
        FileNotFoundError: a folder that does not exist.
    """
    check_scenario_and_clients(scenario, REAL_SEGMENTATION_SCENARIOS, num_clients, task="segmentation with data_dir")
    if image_size < 32:
        raise ValueError(f"image_size={image_size} must be >= 32 (the U-Net pools four times).")
    if samples_per_client is not None and samples_per_client < 0:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 0 (0 or None: all the data).")
    sources = find_segmentation_sources(data_dir)
    used, left_out = sources[:num_clients], tuple(s.name for s in sources[num_clients:])
    clients: list[SegmentationData | None] = [None] * num_clients
    for source, sites in zip(used, sites_per_source(num_clients, len(used))):
        groups = _scan_groups(_read_volumes(source, image_size, seed))
        for i, pieces in zip(sites, _pieces_per_site(groups, len(sites))):
            clients[i] = _site_data(f"site-{i + 1}", source, pieces, seed, i, samples_per_client or None)
    return RealSegmentationFederation(
        scenario, seed, used[0].class_names, tuple(clients), os.fspath(data_dir), left_out
    )
