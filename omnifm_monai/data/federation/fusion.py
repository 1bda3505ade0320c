"""The simulated fusion federation: co-registered phantom pairs per site."""

from __future__ import annotations

import os
from dataclasses import dataclass

from omnifm_monai.data.federation.base import (
    PHANTOM_SCENARIOS,
    SiteFederation,
    held_by_site,
    per_split,
    phantom_site_samples,
    shuffled_split_indices,
)
from omnifm_monai.data.fusion import FUSION_PAIRS, FusionData, phantom_pairs
from omnifm_monai.data.image_io import to_uint8

__all__ = ["FUSION_SCENARIOS", "FusionFederation", "build_fusion_federation"]

FUSION_SCENARIOS: tuple[str, ...] = PHANTOM_SCENARIOS
"""Partition scenarios :func:`build_fusion_federation` knows."""

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


def build_fusion_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> FusionFederation:
    """A phantom fusion federation: co-registered pairs per site, split 60/20/20 (seeded).

    Args:
        scenario: ``cross_modality_hard`` (site i holds pair ``FUSION_PAIRS[i % 4]`` only) or ``iid``
            (every site holds every pair in equal shares).
        num_clients: sites, >= 1.
        seed: seeds every phantom and split.
        data_dir: must be ``None`` (or ``""``/``"phantom"``): give real sites their own folder instead.
        image_size: size of the pairs (>= 16).
        samples_per_client: pairs per site before the split (``None`` -> 160, minimum 5).

    Raises:
        ValueError: for an unknown scenario, a bad count or a ``data_dir``.
    """
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
