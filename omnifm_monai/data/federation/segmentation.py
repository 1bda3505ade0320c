"""The simulated segmentation federation: phantom sites of 2D images and tissue masks."""

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
)
from omnifm_monai.data.image_io import fix_channels, resize_images, resize_masks, to_uint8
from omnifm_monai.data.phantom import MODALITIES, TISSUES
from omnifm_monai.data.segmentation import SegmentationData, phantom_segmentation_arrays
from omnifm_monai.data.site_archive import SPLIT_FRACTIONS, SPLITS, is_phantom

__all__ = ["SEGMENTATION_SCENARIOS", "SegmentationFederation", "build_segmentation_federation"]

SEGMENTATION_SCENARIOS: tuple[str, ...] = PHANTOM_SCENARIOS
"""Simulated federations: one modality per site (``MODALITIES[i % 7]``), or every modality at every site."""

_DEFAULT_SAMPLES_PER_CLIENT = 160


@dataclass(frozen=True)
class SegmentationFederation(SiteFederation[SegmentationData]):
    """A simulated segmentation federation (satisfies :class:`omnifm_monai.tasks.base.TaskFederation`)."""

    class_names: tuple[str, ...]
    clients: tuple[SegmentationData, ...]

    summary_headers = ("site", "modality", "train/val/test", "train foreground %")

    @property
    def num_classes(self) -> int:
        """Mask values (background included): the U-Net's output channels."""
        return len(self.class_names)

    def summary_title(self) -> str:
        """Scenario, seed, sites and the mask values' legend."""
        legend = ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        return f"Segmentation federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites ({legend})"

    def summary_row(self, client: SegmentationData) -> tuple[str, ...]:
        """Site, modality, train/val/test sizes, foreground share of each class in train."""
        masks = client.splits["train"][1]  # (N, S, S)
        share = np.bincount(masks.ravel(), minlength=self.num_classes) / max(masks.size, 1) * 100
        fg = " ".join(f"{i}:{share[i]:.1f}" for i in range(1, self.num_classes))
        return client.name, client.modality, per_split(client.num_samples), fg

    def pooled(self, image_size: int) -> SegmentationData:
        """Every site's splits concatenated into one site ``"pooled"`` (the pooled-centralised reference).

        Images of another size are resized to ``image_size`` (their spacing scaled to match); when the sites
        hold different channel counts every image is made grey. Spacing is kept when every site has it.
        """
        channels = {x.shape[1] for c in self.clients for x, _ in c.splits.values()}
        splits, spacing = {}, {}
        for split in SPLITS:
            held = [c for c in self.clients if split in c.splits]
            images, masks, mm = [], [], []
            for client in held:
                x, y = client.splits[split]  # (N, C, *S) uint8, (N, *S) uint8
                size = (image_size,) * (x.ndim - 2)
                if len(channels) > 1 or x.shape[2:] != size:
                    grey = fix_channels(x.astype(np.float32) / 255.0, 1 if len(channels) > 1 else x.shape[1], "pooled")
                    x = to_uint8(resize_images(grey, size), channels_last=False)
                    y = resize_masks(y.astype(np.int64), size).astype(np.uint8)
                if split in client.spacing:
                    scale = np.asarray(client.splits[split][0].shape[2:], dtype=np.float32) / image_size
                    mm.append(client.spacing[split] * scale)  # (N, D) mm of the pooled grid
                images.append(x)
                masks.append(y)
            if held:
                splits[split] = (np.concatenate(images), np.concatenate(masks))
                if len(mm) == len(held):
                    spacing[split] = np.concatenate(mm).astype(np.float32)
        modality = "+".join(dict.fromkeys(c.modality for c in self.clients))
        source = "+".join(dict.fromkeys(c.source for c in self.clients))
        return SegmentationData("pooled", modality, splits, self.class_names, source, spacing)


def build_segmentation_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> SegmentationFederation:
    """Phantom sites ``site-1`` .. ``site-N``, each ``samples_per_client`` 2D images split 60/20/20, or, with a
    ``data_dir``, the real federation of its MSD folders (:func:`~.segmentation_sources.real_segmentation_federation`).

    ``cross_modality_hard``: site ``i`` (0-based) images modality ``MODALITIES[i % 7]`` only; ``iid``: every
    site spreads its samples over all modalities. Images are stored uint8 with their own channels (3 for
    pathology, else 1); the bundle gives them ``in_channels`` when it reads them.

    Raises:
        ValueError: an unknown scenario, fewer than 1 client or 3 samples, an image under 16 px; for a
            ``data_dir``, see :func:`~.segmentation_sources.real_segmentation_federation`.
    """
    if not is_phantom(data_dir):
        from omnifm_monai.data.federation.segmentation_sources import real_segmentation_federation

        return real_segmentation_federation(
            scenario, num_clients, data_dir, seed=seed, image_size=image_size, samples_per_client=samples_per_client
        )
    total = phantom_site_samples(
        "segmentation", scenario, SEGMENTATION_SCENARIOS, num_clients, image_size, samples_per_client,
        _DEFAULT_SAMPLES_PER_CLIENT, data_dir, "Decathlon folder, DICOM series folder or .npz", min_samples=3,
    )  # fmt: skip
    n_train, n_val = int(total * SPLIT_FRACTIONS[0]), int(total * SPLIT_FRACTIONS[1])
    counts = dict(zip(SPLITS, (n_train, n_val, total - n_train - n_val)))  # floors, the rest to test
    clients = []
    for i in range(num_clients):
        modalities = held_by_site(i, scenario, MODALITIES)
        splits = {}
        for k, split in enumerate(SPLITS):
            per_modality = equal_shares(counts[split], len(modalities))
            images, masks = phantom_segmentation_arrays(
                modalities, per_modality, image_size, 2, (seed * 1000 + i) * 3 + k
            )  # [(n, C, S, S)], [(n, S, S)]
            if len(modalities) > 1:  # mixed channels: store every image grey (N, 1, S, S) except a lone pathology
                images = [fix_channels(x, 1, "phantom") for x in images]
            splits[split] = (
                to_uint8(np.concatenate(images), channels_last=False),
                np.concatenate(masks).astype(np.uint8),
            )
        name = modalities[0] if len(modalities) == 1 else "mixed"
        clients.append(SegmentationData(f"site-{i + 1}", name, splits, tuple(TISSUES), "phantom"))
    return SegmentationFederation(scenario, seed, tuple(TISSUES), tuple(clients))
