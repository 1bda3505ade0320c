"""The real-data (derived) VQA federation: one MSD folder per site, its template questions read through the
SLAKE reader.

``build_vqa_federation(..., data_dir=FOLDER)`` with FOLDER a folder of Medical Segmentation Decathlon folders
(as ``/work/shared/data/real/segmentation``) or one MSD folder. Each sub-folder is a *source*; site ``i``
(0-based) holds source ``i % n`` in sorted folder order (``num_clients < n``: the first ``num_clients``
sources only). Each source's questions are derived (:mod:`omnifm_monai.data.vqa_derived`) into a temporary
SLAKE-layout folder and read back with :func:`omnifm_monai.data.vqa.read_vqa_json`, the reader of real SLAKE
and VQA-RAD sets. The source's train/val/test split is the derived set's (by scan with >= 3 scans, else
contiguous axial slabs); ``k`` sites of one source split each of its splits into ``k`` contiguous blocks of
slices (in volume, slice order). ``samples_per_client`` caps each site's training images (seeded), never
val/test. Every site archive carries the global vocabularies of every template over the federation's sources
(:func:`~omnifm_monai.data.vqa_derived.derived_vocabularies`), as the phantom federation carries the phantom's.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.base import sites_per_source
from omnifm_monai.data.federation.vqa import VQAFederation
from omnifm_monai.data.image_io import to_uint8
from omnifm_monai.data.site_archive import SPLITS
from omnifm_monai.data.vqa import VQAData, read_vqa_json
from omnifm_monai.data.vqa_derived import (
    derived_vocabularies,
    msd_folders,
    read_derived_source,
    write_derived_vqa,
)

__all__ = ["DERIVED_VQA_SCENARIOS", "DerivedVQAFederation", "derived_vqa_federation"]

DERIVED_VQA_SCENARIOS: tuple[str, ...] = ("cross_modality_hard", "modality_specific")
"""Scenarios of the derived federation (the same partition: one source per site)."""

_SPLIT_FILES = {"train": "train.json", "val": "validate.json", "test": "test.json"}


@dataclass(frozen=True)
class DerivedVQAFederation(VQAFederation):
    """A VQA federation of derived sources; ``sources`` are the folders used, ``left_out`` the ones not used."""

    sources: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()

    summary_headers = (
        "site",
        "source",
        "modality",
        "split",
        "volumes train / val / test",
        "images train/val/test",
        "questions train/val/test",
        "question types",
    )

    def summary_title(self) -> str:
        """Scenario, seed, sites, sources, the vocabularies' sizes and the folders left out."""
        title = (
            f"Derived VQA federation '{self.scenario}' (seed {self.seed}; template questions answered from "
            f"masks): {self.num_clients} sites over {len(self.sources)} sources, {self.num_classes} answers, "
            f"{self.vocabularies.vocab_size} question tokens"
        )
        if self.left_out:
            title += f"; first {len(self.sources)} sources only, left out: {', '.join(self.left_out)}"
        return title

    def summary_row(self, client: VQAData) -> tuple[str, ...]:
        """Site, source, modality, split rule, volumes, images and questions per split, question types."""

        def volumes(split: str) -> str:
            return ",".join(sorted({p.get("volume", "?") for p in client.qa.get(split, [])})) or "-"

        types = sorted({p["question_type"] for qa in client.qa.values() for p in qa})
        return (
            client.name,
            client.source,
            client.modality,
            client.qa["train"][0].get("split_rule", "?") if client.qa.get("train") else "?",
            " / ".join(volumes(s) for s in SPLITS),
            "/".join(str(client.num_images(s)) for s in SPLITS),
            "/".join(str(client.num_questions(s)) for s in SPLITS),
            ", ".join(types),
        )


def _read_split(folder: Path, split: str, image_size: int) -> tuple[np.ndarray, list[dict]]:
    """A derived split through the SLAKE reader: uint8 images (N, S, S) and qa with ``volume`` added."""
    images, qa = read_vqa_json(folder / _SPLIT_FILES[split], folder / "imgs", image_size=image_size, in_channels=1)
    for p in qa:
        p["volume"] = Path(p.pop("image_file")).parent.name
    return to_uint8(images), qa  # (N, 1, S, S) float -> (N, S, S) uint8


def _take(images: np.ndarray, qa: list[dict], keep: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The images ``keep`` (sorted indices) and their questions, re-indexed."""
    new = {int(old): k for k, old in enumerate(keep)}
    return images[keep], [{**p, "index": new[p["index"]]} for p in qa if p["index"] in new]


def derived_vqa_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int,
    data_dir: str | os.PathLike,
    image_size: int,
    samples_per_client: int | None,
) -> DerivedVQAFederation:
    """The derived VQA federation of the MSD folders below ``data_dir`` (see the module docstring).

    Raises:
        ValueError: for a scenario other than :data:`DERIVED_VQA_SCENARIOS`, a bad count or image size, or a
            site left with an empty split (too many sites for its source's slices).
        FileNotFoundError: when ``data_dir`` is neither an MSD folder nor a folder of them.
    """
    if scenario not in DERIVED_VQA_SCENARIOS:
        raise ValueError(
            f"scenario={scenario!r} is not supported for derived VQA federations (one source per site); "
            f"expected one of {DERIVED_VQA_SCENARIOS}."
        )
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16.")
    cap = int(samples_per_client or 0)
    if cap < 0:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 0 (0 or None: all training images).")
    folders = msd_folders(data_dir)
    used, left_out = folders[:num_clients], folders[num_clients:]
    sources = [read_derived_source(f, image_size=image_size, seed=seed) for f in used]
    vocab = derived_vocabularies(sources)
    clients: list[VQAData | None] = [None] * num_clients
    with tempfile.TemporaryDirectory(prefix="omnifm_vqa_derived_") as tmp:
        for source, sites in zip(sources, sites_per_source(num_clients, len(sources))):
            folder = Path(tmp) / source.folder.name
            write_derived_vqa(source, folder, seed=seed)
            per_site: list[tuple[dict, dict]] = [({}, {}) for _ in sites]
            for split in SPLITS:
                images, qa = _read_split(folder, split, image_size)
                modality_tag = f"{source.modality} (derived)"  # never a phantom modality: HELD_OUT never applies
                qa = [{**p, "modality": modality_tag, "split_rule": source.split_rule} for p in qa]
                for (site_images, site_qa), block in zip(per_site, np.array_split(np.arange(len(images)), len(sites))):
                    site_images[split], site_qa[split] = _take(images, qa, block)
            for i, (site_images, site_qa) in zip(sites, per_site):
                empty = [split for split in SPLITS if not len(site_qa[split])]
                if empty:
                    raise ValueError(
                        f"'{source.folder}': site-{i + 1} gets no {'/'.join(empty)} questions "
                        f"({len(sites)} sites share this source); use fewer clients."
                    )
                n_train = len(site_images["train"])
                if 0 < cap < n_train:
                    keep = np.sort(np.random.default_rng([seed, i, 0xCA]).choice(n_train, cap, replace=False))
                    site_images["train"], site_qa["train"] = _take(site_images["train"], site_qa["train"], keep)
                clients[i] = VQAData(
                    f"site-{i + 1}",
                    source.modality,
                    site_images,
                    site_qa,
                    vocab,
                    source=f"derived from {source.folder.name} masks",
                )
    return DerivedVQAFederation(
        scenario=scenario,
        seed=seed,
        clients=tuple(clients),
        vocabularies=vocab,
        sources=tuple(f.name for f in used),
        left_out=tuple(f.name for f in left_out),
    )
