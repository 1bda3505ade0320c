"""The simulated super-resolution federation: phantom HR images per site (LR images are derived on load)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from omnifm_monai.data.federation.base import (
    PHANTOM_SCENARIOS,
    SiteFederation,
    equal_shares,
    held_by_site,
    per_split,
    phantom_site_samples,
    shuffled_split_indices,
    site_images_uint8,
)
from omnifm_monai.data.phantom import MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import SPLITS, is_phantom
from omnifm_monai.data.super_resolution import SuperResolutionData

__all__ = ["SR_SCENARIOS", "SuperResolutionFederation", "build_super_resolution_federation"]

SR_SCENARIOS: tuple[str, ...] = PHANTOM_SCENARIOS
"""Partition scenarios :func:`build_super_resolution_federation` knows."""

_DEFAULT_SITE_SAMPLES = 160


@dataclass(frozen=True)
class SuperResolutionFederation(SiteFederation[SuperResolutionData]):
    """Simulated SR federation: one :class:`SuperResolutionData` per site (``site-1`` .. ``site-N``)."""

    clients: tuple[SuperResolutionData, ...]

    summary_headers = ("site", "modality", "channels", "HR size", "train/val/test")

    @property
    def num_classes(self) -> int:
        """0: super-resolution has no label space."""
        return 0

    def pooled(self, image_size: int) -> SuperResolutionData:
        """Every site's splits concatenated into one site ``"pooled"`` (the pooled-centralised reference).

        Gray sites become RGB when any site is RGB, uint8 sites uint16 (x 257, exact) when any is uint16; HR
        sizes must agree (``image_size`` is the size every site was built with).

        Raises:
            ValueError: when a site's HR size is not ``image_size``.
        """
        sizes = {x.shape[1:3] for c in self.clients for x in c.splits.values()}
        if sizes != {(image_size, image_size)}:
            raise ValueError(f"pooled(image_size={image_size}): the sites hold HR sizes {sorted(sizes)}.")
        rgb = any(c.num_channels == 3 for c in self.clients)
        wide = any(x.dtype == np.uint16 for c in self.clients for x in c.splits.values())

        def common(x: np.ndarray) -> np.ndarray:  # (N, S, S) or (N, S, S, 3) -> the pooled layout and dtype
            x = np.repeat(x[..., None], 3, axis=-1) if rgb and x.ndim == 3 else x
            return x.astype(np.uint16) * 257 if wide and x.dtype == np.uint8 else x

        splits = {s: np.concatenate([common(c.splits[s]) for c in self.clients if s in c.splits]) for s in SPLITS}
        modalities = "+".join(dict.fromkeys(c.modality for c in self.clients))
        sources = "+".join(dict.fromkeys(c.source for c in self.clients))
        return SuperResolutionData("pooled", modalities, splits, source=sources)

    def summary_title(self) -> str:
        """Scenario, seed and sites."""
        return f"Super-resolution federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites"

    def summary_row(self, client: SuperResolutionData) -> tuple[str, ...]:
        """Site, modality, channels, HR size, train/val/test counts."""
        size = "x".join(str(s) for s in next(iter(client.splits.values())).shape[1:3])
        return client.name, client.modality, str(client.num_channels), size, per_split(client.num_samples)


def build_super_resolution_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> SuperResolutionFederation:
    """An SR federation: phantom HR images per site, split 60/20/20 (seeded), or, with a ``data_dir`` folder,
    HR tiles of real images (:mod:`omnifm_monai.data.federation.super_resolution_sources`).

    ``cross_modality_hard``: site ``i`` (0-based) holds modality ``MODALITIES[i % 7]`` only; ``iid``: every
    site holds every modality in equal shares (RGB then, gray repeated). Gray sites store (N, S, S), pathology
    sites (N, S, S, 3); the loader converts to the bundle's ``in_channels``.

    Args:
        scenario: one of :data:`SR_SCENARIOS`.
        num_clients: sites, >= 1.
        seed: seeds every phantom and split.
        data_dir: ``None`` (or ``""``/``"phantom"``): the phantom; a folder of per-modality image folders, one
            image folder, or several joined by ``os.pathsep``: the real federation (``cross_modality_hard``).
        image_size: HR size (phantom images; real tiles).
        samples_per_client: phantom: images per site before the split (``None`` or 0 -> 160, minimum 5);
            real: ``None`` or 0 -> every tile, ``k`` -> at most ``k`` training tiles per site.

    Raises:
        ValueError: for an unknown scenario or a bad count (real data: see ``super_resolution_sites``).
        FileNotFoundError: when ``data_dir`` holds no image folder.
    """
    if not is_phantom(data_dir):
        from omnifm_monai.data.federation.super_resolution_sources import super_resolution_sites

        return super_resolution_sites(
            scenario, num_clients, seed=seed, data_dir=data_dir, image_size=image_size,
            samples_per_client=samples_per_client,
        )  # fmt: skip
    samples = phantom_site_samples(
        "super-resolution", scenario, SR_SCENARIOS, num_clients, image_size, samples_per_client,
        _DEFAULT_SITE_SAMPLES, data_dir, "folder or .npz",
    )  # fmt: skip
    clients = []
    for i in range(num_clients):
        held = held_by_site(i, scenario, MODALITIES)
        parts = []
        for modality, n in zip(held, equal_shares(samples, len(held))):
            if n:
                site_seed = int(np.random.default_rng([seed, i, MODALITIES.index(modality)]).integers(2**31 - 1))
                ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=2, seed=site_seed)
                parts.append(np.asarray(ds.images, dtype=np.float32))  # (n, C, S, S)
        images = site_images_uint8(parts)  # (N, S, S) or (N, S, S, 3)
        splits = {s: images[idx] for s, idx in shuffled_split_indices(seed, i, samples).items()}
        clients.append(SuperResolutionData(f"site-{i + 1}", "+".join(held), splits, source="phantom"))
    return SuperResolutionFederation(scenario=scenario, seed=seed, clients=tuple(clients))
