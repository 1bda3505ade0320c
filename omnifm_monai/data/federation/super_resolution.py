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
    """A phantom SR federation: HR images per site, split 60/20/20 (seeded).

    ``cross_modality_hard``: site ``i`` (0-based) holds modality ``MODALITIES[i % 7]`` only; ``iid``: every
    site holds every modality in equal shares (RGB then, gray repeated). Gray sites store (N, S, S), pathology
    sites (N, S, S, 3); the loader converts to the bundle's ``in_channels``.

    Args:
        scenario: one of :data:`SR_SCENARIOS`.
        num_clients: sites, >= 1.
        seed: seeds every phantom and split.
        data_dir: must be ``None`` (or ``""``/``"phantom"``): SR federations are built from the phantom.
        image_size: HR size.
        samples_per_client: images per site before the split (``None`` -> 160, minimum 5).

    Raises:
        ValueError: for an unknown scenario, a bad count or a ``data_dir``.
    """
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
