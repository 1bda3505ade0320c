"""The VQA federation: phantom images and question-answer pairs per site (or, with ``data_dir``, template
questions derived from real masks: :mod:`omnifm_monai.data.federation.vqa_sources`), global vocabularies."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from omnifm_monai.data.federation.base import (
    SiteFederation,
    equal_shares,
    held_by_site,
    per_split,
    phantom_site_samples,
    shuffled_split_indices,
    site_images_uint8,
)
from omnifm_monai.data.image_io import fix_channels, from_uint8, resize_images, to_uint8
from omnifm_monai.data.phantom import MODALITIES
from omnifm_monai.data.site_archive import SPLITS, is_phantom
from omnifm_monai.data.vqa import VQAData, phantom_qa
from omnifm_monai.data.vqa_vocabulary import VQAVocabularies, phantom_vocabularies

__all__ = ["VQA_SCENARIOS", "VQAFederation", "build_vqa_federation"]

VQA_SCENARIOS: tuple[str, ...] = ("modality_specific", "cross_modality_hard", "iid")
"""Scenarios of :func:`build_vqa_federation` (``modality_specific``: the paper's VQA task 2;
``cross_modality_hard``, the federated job's default scenario, is the same partition)."""

_DEFAULT_SITE_SAMPLES = 120


@dataclass(frozen=True)
class VQAFederation(SiteFederation[VQAData]):
    """Simulated VQA federation: one :class:`VQAData` per site (``site-1`` .. ``site-N``), global vocabularies."""

    clients: tuple[VQAData, ...]
    vocabularies: VQAVocabularies

    summary_headers = ("site", "modality", "images train/val/test", "questions train/val/test")

    @property
    def num_classes(self) -> int:
        """Size of the global answer vocabulary (the answer head's outputs)."""
        return self.vocabularies.num_answers

    def summary_title(self) -> str:
        """Scenario, seed, sites and the vocabularies' sizes."""
        return (
            f"VQA federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites, "
            f"{self.num_classes} answers, {self.vocabularies.vocab_size} question tokens"
        )

    def summary_row(self, client: VQAData) -> tuple[str, ...]:
        """Site, modality, images and questions per split."""
        return client.name, client.modality, per_split(client.num_images), per_split(client.num_questions)

    def pooled(self, image_size: int) -> VQAData:
        """Every site's splits concatenated into one site named ``"pooled"`` (images resized to ``image_size``;
        gray ones made RGB when any site is RGB), questions re-indexed, the global vocabularies."""
        rgb = any(x.ndim == 4 for c in self.clients for x in c.images.values())
        images, qa = {}, {}
        for split in SPLITS:
            parts, pairs, offset = [], [], 0
            for client in self.clients:
                if split not in client.images:
                    continue
                x = resize_images(from_uint8(client.images[split]), image_size)  # (n, C, S, S)
                parts.append(to_uint8(fix_channels(x, 3) if rgb else x))  # (n, S, S[, 3])
                pairs += [{**p, "index": p["index"] + offset} for p in client.qa.get(split, [])]
                offset += len(x)
            images[split], qa[split] = np.concatenate(parts), pairs
        modalities = "+".join(dict.fromkeys(c.modality for c in self.clients))
        return VQAData("pooled", modalities, images, qa, self.vocabularies, source="pooled")


def build_vqa_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> VQAFederation:
    """A VQA federation: the phantom (``data_dir`` ``None``/``""``/``"phantom"``) or derived from real masks.

    ``data_dir`` a folder of MSD folders (or one): template questions derived from their masks
    (:func:`~omnifm_monai.data.federation.vqa_sources.derived_vqa_federation`; ``cross_modality_hard`` or
    ``modality_specific`` only; ``samples_per_client`` ``None``/0: every training image, k > 0: at most k
    training images per site).

    The phantom: images split 60/20/20 per site by image, all questions of an image together.

    ``modality_specific`` (the paper's VQA task 2; alias ``cross_modality_hard``, the federated job's default):
    site ``i`` (0-based) holds ``MODALITIES[i % 7]`` only;
    ``iid``: every site holds every modality in equal shares (stored RGB). Every site archive carries the
    global :func:`phantom_vocabularies`; the held-out training combinations apply at load time.

    Args:
        scenario: one of :data:`VQA_SCENARIOS`.
        num_clients: sites, >= 1.
        seed: seeds every phantom and split.
        data_dir: ``None`` (or ``""``/``"phantom"``), or a folder of MSD segmentation folders.
        image_size: square image size (>= 16).
        samples_per_client: phantom: images per site before the split (``None`` -> 120, minimum 5).

    Raises:
        ValueError: for an unknown scenario or a bad count.
        FileNotFoundError: for a ``data_dir`` that is not a folder of MSD folders.
    """
    if not is_phantom(data_dir):
        from omnifm_monai.data.federation.vqa_sources import derived_vqa_federation

        return derived_vqa_federation(
            scenario, num_clients, seed=seed, data_dir=data_dir, image_size=image_size,
            samples_per_client=samples_per_client,
        )  # fmt: skip
    if samples_per_client == 0:
        samples_per_client = None
    samples = phantom_site_samples(
        "VQA", scenario, VQA_SCENARIOS, num_clients, image_size, samples_per_client, _DEFAULT_SITE_SAMPLES,
        data_dir, "SLAKE / VQA-RAD folder or .npz",
    )  # fmt: skip
    vocab = phantom_vocabularies()
    clients = []
    for i in range(num_clients):
        held = held_by_site(i, scenario, MODALITIES)
        parts, qa, offset = [], [], 0
        for modality, n in zip(held, equal_shares(samples, len(held))):
            if n:
                site_seed = int(np.random.default_rng([seed, i, MODALITIES.index(modality), 0x7A]).integers(2**31 - 1))
                x, pairs = phantom_qa(modality, n, image_size, site_seed)
                parts.append(x)
                qa += [{**p, "index": p["index"] + offset} for p in pairs]
                offset += n
        images = site_images_uint8(parts)  # (N, S, S) or (N, S, S, 3)
        split_images, split_qa = {}, {}
        for split, idx in shuffled_split_indices(seed, i, samples).items():
            new = {int(old): k for k, old in enumerate(idx)}  # old image index -> index in the split
            split_images[split] = images[idx]
            split_qa[split] = [{**p, "index": new[p["index"]]} for p in qa if p["index"] in new]
        clients.append(VQAData(f"site-{i + 1}", "+".join(held), split_images, split_qa, vocab, source="phantom"))
    return VQAFederation(scenario=scenario, seed=seed, clients=tuple(clients), vocabularies=vocab)
