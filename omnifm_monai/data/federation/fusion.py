"""The simulated fusion federation: co-registered phantom pairs per site, or axial slices of the volume pairs
of a folder with ``pairs.json`` (:mod:`.fusion_sources` holds the folder's rules)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.base import (
    PHANTOM_SCENARIOS,
    SiteFederation,
    check_scenario_and_clients,
    held_by_site,
    per_split,
    phantom_site_samples,
    shuffled_split_indices,
)
from omnifm_monai.data.federation.fusion_sources import folder_sites
from omnifm_monai.data.fusion import FUSION_PAIRS, FusionData, phantom_pairs
from omnifm_monai.data.image_io import resize_images, to_uint8
from omnifm_monai.data.site_archive import SPLITS, is_phantom

__all__ = [
    "FUSION_SCENARIOS",
    "FOLDER_SCENARIOS",
    "FusionFederation",
    "FusionFolderFederation",
    "build_fusion_federation",
]

FUSION_SCENARIOS: tuple[str, ...] = PHANTOM_SCENARIOS
"""Partition scenarios :func:`build_fusion_federation` knows."""

FOLDER_SCENARIOS: tuple[str, ...] = ("cross_modality_hard",)
"""Scenarios of a folder of volume pairs: one pair per site (``iid`` is the phantom's only)."""

_DEFAULT_SITE_SAMPLES = 160


@dataclass(frozen=True)
class FusionFederation(SiteFederation[FusionData]):
    """Simulated fusion federation: one :class:`FusionData` per site (``site-1`` .. ``site-N``)."""

    clients: tuple[FusionData, ...]

    summary_headers = ("site", "modality pairs", "size", "train/val/test")

    @property
    def num_classes(self) -> int:
        """0: fusion has no label space."""
        return 0

    def summary_title(self) -> str:
        """Scenario, seed and sites."""
        return f"Fusion federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites"

    def summary_row(self, client: FusionData) -> tuple[str, ...]:
        """Site, modality pair(s), size, train/val/test counts."""
        size = "x".join(str(s) for s in next(iter(client.splits.values())).shape[2:])
        return client.name, client.modalities, size, per_split(client.num_samples)

    def pooled(self, image_size: int) -> FusionData:
        """Every site's splits concatenated in site order into one site named ``"pooled"`` (resized to
        ``image_size`` where a site differs), for the pooled centralised reference."""
        splits = {}
        for split in SPLITS:
            parts = [c.splits[split] for c in self.clients if c.num_samples(split)]  # each (n_k, 2, S_k, S_k)
            resized = [
                x if x.shape[-1] == image_size else to_uint8(resize_images(x / 255.0, image_size), channels_last=False)
                for x in parts
            ]
            if resized:
                splits[split] = np.concatenate(resized)  # (N, 2, S, S)
        modalities = ", ".join(dict.fromkeys(c.modalities for c in self.clients))
        return FusionData("pooled", modalities, splits, source=f"pooled: {', '.join(c.name for c in self.clients)}")


@dataclass(frozen=True)
class FusionFolderFederation(FusionFederation):
    """A fusion federation from a folder of co-registered volume pairs (:mod:`.fusion_sources`).

    Args:
        data_dir: the folder holding ``pairs.json``.
        site_pairs: the ``pairs.json`` name of each site's pair.
        pairs_in_folder: pairs that ``pairs.json`` lists (more than the sites use when there are fewer sites).
        note: ``pairs.json``'s ``note`` (e.g. "population-average templates, NOT single subjects").
    """

    data_dir: str = ""
    site_pairs: tuple[str, ...] = ()
    pairs_in_folder: int = 0
    note: str = ""

    summary_headers = ("site", "pair", "modalities", "size", "train/val/test", "z slices train; val; test")

    def summary_title(self) -> str:
        """Scenario, seed, folder, which pairs are used, and the first sentence of the folder's note."""
        used = len(set(self.site_pairs))
        which = (
            f"all {used} pairs of pairs.json"
            if used == self.pairs_in_folder
            else f"only the first {used} of the {self.pairs_in_folder} pairs of pairs.json"
        )
        note = f" {self.note.split('. ')[0].rstrip('.')}." if self.note else ""
        return (
            f"Fusion federation '{self.scenario}' (seed {self.seed}) from '{self.data_dir}': {self.num_clients} "
            f"sites, {which}, contiguous z slabs 60/20/20.{note}"
        )

    def summary_row(self, client: FusionData) -> tuple[str, ...]:
        """Site, pair, modalities, size, counts and the z range of each split (``a-b``, ``k`` slices when capped)."""

        def z_range(split: str) -> str:
            z = client.slices.get(split, np.zeros(0, np.int64))
            if not len(z):
                return "-"
            span = f"{z[0]}-{z[-1]}"
            return span if len(z) == z[-1] - z[0] + 1 else f"{len(z)} in {span}"

        pair = self.site_pairs[next(i for i, c in enumerate(self.clients) if c is client)]
        size, counts = super().summary_row(client)[2:]
        return client.name, pair, client.modalities, size, counts, "; ".join(z_range(s) for s in SPLITS)


def build_fusion_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> FusionFederation:
    """A fusion federation: phantom pairs (split 60/20/20, seeded) or the volume pairs of a folder.

    Args:
        scenario: ``cross_modality_hard`` (site i holds pair ``i % P`` only) or, phantom only, ``iid``
            (every site holds every pair in equal shares).
        num_clients: sites, >= 1.
        seed: seeds every phantom and split (a folder: only the training cap).
        data_dir: ``None``/``""``/``"phantom"`` for the phantom, else a folder of co-registered volumes with
            ``pairs.json`` (rules in :mod:`omnifm_monai.data.federation.fusion_sources`).
        image_size: size of the pairs (>= 16).
        samples_per_client: phantom: pairs per site before the split (``None`` or 0 -> 160, minimum 5);
            folder: ``None`` or 0 keeps every kept slice, k > 0 caps each site's training slices at k.

    Raises:
        ValueError: for an unknown scenario, a bad count or a bad ``pairs.json``/volume pair.
        FileNotFoundError: when the folder, its ``pairs.json`` or a volume it names does not exist.
    """
    if not is_phantom(data_dir):
        return _folder_federation(
            scenario, num_clients, seed, Path(data_dir).expanduser(), image_size, samples_per_client
        )
    samples_per_client = samples_per_client or None
    samples = phantom_site_samples(
        "fusion", scenario, FUSION_SCENARIOS, num_clients, image_size, samples_per_client, _DEFAULT_SITE_SAMPLES,
        data_dir, "folder of pairs or .npz",
    )  # fmt: skip
    clients = []
    for i in range(num_clients):
        held = held_by_site(i, scenario, FUSION_PAIRS)
        pairs = to_uint8(phantom_pairs(held, samples, image_size, [seed, i]), channels_last=False)  # (N, 2, S, S)
        splits = {s: pairs[idx] for s, idx in shuffled_split_indices(seed, i, samples).items()}
        names = ", ".join("+".join(p) for p in held)
        clients.append(FusionData(f"site-{i + 1}", names, splits, source="phantom"))
    return FusionFederation(scenario=scenario, seed=seed, clients=tuple(clients))


def _folder_federation(
    scenario: str, num_clients: int, seed: int, folder: Path, image_size: int, samples_per_client: int | None
) -> FusionFolderFederation:
    """The real-data federation of a folder with ``pairs.json``."""
    check_scenario_and_clients(scenario, FOLDER_SCENARIOS, num_clients, task=f"a fusion folder ('{folder}')")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16.")
    if samples_per_client is not None and samples_per_client < 0:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 0 (0 or None: every kept slice).")
    clients, site_pairs, pairs_in_folder, note = folder_sites(num_clients, seed, folder, image_size, samples_per_client)
    return FusionFolderFederation(
        scenario=scenario,
        seed=seed,
        clients=tuple(clients),
        data_dir=str(folder),
        site_pairs=tuple(site_pairs),
        pairs_in_folder=pairs_in_folder,
        note=note,
    )
