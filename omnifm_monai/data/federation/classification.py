"""Named federated partitions: which site holds which images, in which label space.

:func:`build_federation` builds one of the :data:`SCENARIOS` either from the embedded multi-modality
phantom (``data_dir=None``) or from a folder of MedMNIST-v2 ``.npz`` files (one file = one modality with
its own label space). Every site is an :class:`~omnifm_monai.data.medmnist.ImageClassificationData`
named ``site-1`` .. ``site-N`` whose labels are ids in the federation's global label space
(:attr:`Federation.class_names`); each site stores uint8 images exactly like MedMNIST, so a site's share
can be written with ``save_npz`` and read back by ``load_medmnist`` on the hospital's machine.

Scenarios:

- ``cross_modality_hard``: one modality per site, label spaces differing between modalities (the paper's
  MedMNIST "Scenario 1 Hard").
- ``cross_modality_mixed``: each site holds 2-3 modalities (a primary one plus one or two drawn by seed);
  label spaces are still per modality, a site's label space is the union of its modalities'.
- ``iid``: every site draws from every modality and every class uniformly (the control).
- ``cross_modality_shared``: the fixed task: one modality per site and the same label space at every site
  (the phantom's findings rendered through each site's modality; real files relabelled by a label map,
  :mod:`.label_map`, onto one shared question such as normal / abnormal).

Rules (the paper does not publish its split; these are ours):

- Phantom: site ``i`` has primary modality ``modalities[i % M]`` (so with more sites than modalities a
  modality repeats over several sites). Each modality's label space is a seeded subset of
  :data:`FINDINGS_PER_MODALITY` phantom findings, chosen greedily so that subsets differ between modalities
  and every finding is used as evenly as possible (subsets may overlap). Each site draws
  ``samples_per_client`` images (shared equally between the modalities it holds) from its own phantom
  seeds and splits them 60/20/20 (stratified by modality and label). ``iid`` sites use all findings.
- MedMNIST folder: for each flag the file matching ``image_size`` is used when present
  (``{flag}_{image_size}.npz``, or ``{flag}.npz`` for 28), else the 28 px ``{flag}.npz``, else the
  size closest to ``image_size``. Files get disjoint label offsets in flag order and prefixed class names
  (``"breastmnist:malignant"``). For ``cross_modality_hard`` each file gets
  ``min(3, num_clients // num_files)`` sites and the remaining sites go to files in proportion to their
  training-set size (largest remainder); sites are numbered round-robin over files (10 sites over
  breast 546 / pneumonia 4708 / retina 1080 training images: 3 / 4 / 3). In ``cross_modality_mixed`` that
  file is a site's primary one and 1-2 more files are drawn by seed; in ``iid`` every site holds every
  file. Each file's official train/val/test splits are divided disjointly and equally between the sites
  holding it (seeded, stratified by label).
  ``samples_per_client`` caps each site's training set (stratified subsample; ``None`` keeps everything);
  validation and test sets are never capped. ``data_dir`` may name several folders (a sequence, or one
  string joined by ``os.pathsep``).
- Label map (``label_map=``; required for ``cross_modality_shared`` on a folder): exactly the files
  the map names are read, each file's labels become shared ids (:mod:`.label_map`) instead of disjoint
  offsets, and the class names are the map's. Sites are then assigned to files as above. On the phantom
  the map names the one stem ``"phantom"`` with finding ids (:data:`~omnifm_monai.data.phantom.FINDINGS`)
  as source labels: only the findings it maps to a class are rendered (one mapped to null is not
  rendered either), so a site keeps its size, and they are relabelled into the map's classes, e.g.
  ``{"phantom": {"0": "normal", "2": "abnormal", "5": "abnormal"}}`` asks every site normal or abnormal.
- ``site_sizes``: one ``samples_per_client`` per site, in site order (phantom: images before the split;
  folder: the training cap), e.g. ``(400, 400, 60, 60)``: a few large sites and several small ones.
- Channels and sizes: a site that mixes gray and RGB sources stores everything as RGB (gray repeated
  over 3 channels); a site that mixes image sizes stores everything resized to ``image_size``. A
  single-source site keeps its source's layout; the classification data loader fixes channels and size.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.base import SiteFederation, check_scenario_and_clients, per_split
from omnifm_monai.data.federation.label_map import PHANTOM_STEM, LabelMap, load_label_map
from omnifm_monai.data.federation.medmnist_sites import npz_sites
from omnifm_monai.data.federation.partition import merge_blocks, sources_of_site, stratified_order, with_label_space
from omnifm_monai.data.federation.site_sizes import sizes_per_site
from omnifm_monai.data.image_io import to_uint8
from omnifm_monai.data.medmnist import ImageClassificationData
from omnifm_monai.data.phantom import FINDINGS, MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import SPLITS, split_cuts

__all__ = [
    "SCENARIOS",
    "FINDINGS_PER_MODALITY",
    "Federation",
    "build_federation",
]

SCENARIOS: tuple[str, ...] = ("cross_modality_hard", "cross_modality_mixed", "iid", "cross_modality_shared")
"""Partition scenarios :func:`build_federation` knows."""

FINDINGS_PER_MODALITY = 3
"""Size of each phantom modality's label space in the cross-modality scenarios."""

_DEFAULT_PHANTOM_SAMPLES = 240


@dataclass(frozen=True)
class Federation(SiteFederation[ImageClassificationData]):
    """A federated partition: the global label space and one data set per site.

    Args:
        scenario: one of :data:`SCENARIOS`.
        seed: the seed it was built with.
        class_names: names of the global label space; global id ``i`` is ``class_names[i]``.
        clients: one data set per site, named ``site-1`` .. ``site-N``, labels in global ids.
    """

    class_names: tuple[str, ...]
    clients: tuple[ImageClassificationData, ...]

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario={self.scenario!r} is not supported; expected one of {SCENARIOS}.")
        for client in self.clients:
            if client.label_space and max(client.label_space) >= len(self.class_names):
                raise ValueError(
                    f"{client.name}: label_space {client.label_space} exceeds the global label space of "
                    f"{len(self.class_names)} classes."
                )

    @property
    def num_classes(self) -> int:
        """Size of the global label space (the classifier's output size)."""
        return len(self.class_names)

    def pooled(self, image_size: int) -> ImageClassificationData:
        """Every site's splits in one data set (centralised training on the pooled data, the upper
        reference of federated learning); gray sites become RGB if any site is RGB, and sizes that
        differ are resized to ``image_size``."""
        blocks = [(client.splits, client.modality, client.source) for client in self.clients]
        return merge_blocks("pooled", blocks, self.class_names, image_size)

    summary_headers = (
        "site",
        "modality",
        "source",
        "label space",
        "train/val/test",
        "train histogram",
        "test majority",
    )

    def summary_title(self) -> str:
        """Scenario, seed, sites and the global label space's legend."""
        legend = ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        return (
            f"Federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites, "
            f"{self.num_classes} classes ({legend})"
        )

    def summary_row(self, client: ImageClassificationData) -> tuple[str, ...]:
        """Site, modality, source, label space, sizes, train histogram, test majority rate.

        The majority-class rate is the test accuracy of always predicting the site's most frequent test
        class: the floor any personalised model must beat.
        """
        c = client
        train_labels = c.splits["train"][1] if "train" in c.splits else np.zeros(0, np.int64)
        test_labels = c.splits["test"][1] if "test" in c.splits else np.zeros(0, np.int64)
        ids, counts = np.unique(train_labels, return_counts=True)
        histogram = " ".join(f"{i}:{n}" for i, n in zip(ids.tolist(), counts.tolist()))
        majority = np.bincount(test_labels).max() / test_labels.size if test_labels.size else float("nan")
        return (
            c.name,
            c.modality,
            c.source,
            ",".join(str(i) for i in c.label_space),
            per_split(c.num_samples),
            histogram,
            f"{majority:.3f}",
        )


def _modality_label_spaces(modalities: Sequence[str], num_findings: int, seed: int) -> dict[str, tuple[int, ...]]:
    """A seeded subset of findings per modality: subsets differ where possible, findings used evenly."""
    rng = np.random.default_rng([seed, 0x5EED])
    k = min(FINDINGS_PER_MODALITY, num_findings)
    combos = list(itertools.combinations(range(num_findings), k))
    combos = [combos[i] for i in rng.permutation(len(combos))]
    usage = np.zeros(num_findings, dtype=np.int64)
    used: set[tuple[int, ...]] = set()
    spaces = {}
    for modality in modalities:
        fresh = [c for c in combos if c not in used] or combos  # repeat subsets only once all are taken
        best = min(fresh, key=lambda c: int(usage[list(c)].sum()))  # first of the least-used, in seeded order
        spaces[modality] = best
        used.add(best)
        usage[list(best)] += 1
    return spaces


def _phantom_federation(
    scenario: str,
    num_clients: int,
    seed: int,
    image_size: int,
    sizes: Sequence[int],
    modalities: Sequence[str] | None,
    label_map: LabelMap | None = None,
) -> Federation:
    if modalities is None:
        modalities = MODALITIES
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities={list(modalities)} must be a non-empty subset of {MODALITIES}.")
    modalities = tuple(dict.fromkeys(modalities))
    if min(sizes) < 5:
        raise ValueError(
            f"samples_per_client={min(sizes)} (of site sizes {list(sizes)}) must be >= 5 so that train, val and "
            "test are non-empty."
        )
    rng = np.random.default_rng([seed, len(modalities), num_clients])
    if label_map is not None and scenario not in ("iid", "cross_modality_shared"):
        raise ValueError(
            f"a label map on the phantom needs one label space for every site (scenario cross_modality_shared or "
            f"iid), got scenario={scenario!r}."
        )
    all_findings = tuple(range(len(FINDINGS))) if label_map is None else _mapped_findings(label_map)
    spaces = (
        dict.fromkeys(modalities, all_findings)
        if scenario in ("iid", "cross_modality_shared")
        else _modality_label_spaces(modalities, len(FINDINGS), seed)
    )
    base_seed = int(rng.integers(0, 2**31 - 1 - num_clients * len(modalities)))

    clients = []
    for i, samples in enumerate(sizes):
        held = sources_of_site(scenario, modalities[i % len(modalities)], modalities, rng)
        counts = [len(c) for c in np.array_split(np.arange(samples), len(held))]
        images, labels, strata = [], [], []
        any_rgb = False
        for j, (modality, n) in enumerate(zip(held, counts)):
            if n == 0:  # more modalities than samples
                continue
            ds = make_phantom_dataset(
                modality,
                n,
                image_size=image_size,
                spatial_dims=2,
                seed=base_seed + i * len(modalities) + modalities.index(modality),
                findings=list(spaces[modality]),
            )
            x = to_uint8(np.asarray(ds.images))
            any_rgb |= x.ndim == 4
            images.append(x)
            labels.append(np.asarray(ds.labels, dtype=np.int64))
            strata.append(j * len(FINDINGS) + labels[-1])
        if any_rgb:
            images = [np.repeat(x[..., None], 3, axis=-1) if x.ndim == 3 else x for x in images]
        x_all, y_all, strata_all = np.concatenate(images), np.concatenate(labels), np.concatenate(strata)
        order = stratified_order(strata_all, rng)
        cuts = np.split(order, split_cuts(samples))
        splits = {s: (x_all[np.sort(idx)], y_all[np.sort(idx)]) for s, idx in zip(SPLITS, cuts)}
        client = merge_blocks(f"site-{i + 1}", [(splits, "+".join(held), "phantom")], FINDINGS, image_size)
        space = sorted({f for m in held for f in spaces[m]})
        client = with_label_space(client, space, FINDINGS)
        clients.append(client if label_map is None else label_map.apply(client, PHANTOM_STEM))
    class_names = tuple(FINDINGS) if label_map is None else label_map.class_names
    return Federation(scenario=scenario, seed=seed, class_names=class_names, clients=tuple(clients))


def _mapped_findings(label_map: LabelMap) -> tuple[int, ...]:
    """The finding ids a phantom label map renders (those it maps to a class), checked against the map."""
    if label_map.stems != (PHANTOM_STEM,):
        raise ValueError(
            f"label map {label_map.origin} names {list(label_map.stems)}; on the phantom it names only "
            f"{PHANTOM_STEM!r}, with finding ids {dict(enumerate(FINDINGS))} as source labels."
        )
    table = label_map.files[PHANTOM_STEM]
    unknown = sorted(set(table) - set(range(len(FINDINGS))))
    if unknown:
        raise ValueError(
            f"label map {label_map.origin}: 'phantom' has finding id(s) {unknown}; expected ids 0-{len(FINDINGS) - 1} "
            f"of {list(FINDINGS)}."
        )
    return tuple(f for f in sorted(table) if table[f] is not None)


def _folders(data_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The data folders: one path, several joined by ``os.pathsep``, or a sequence of paths."""
    if isinstance(data_dir, os.PathLike):
        data_dir = [data_dir]
    elif isinstance(data_dir, str):
        data_dir = data_dir.split(os.pathsep)
    return [Path(f).expanduser() for f in data_dir if os.fspath(f)]


def build_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    image_size: int = 64,
    samples_per_client: int | None = 240,
    modalities: Sequence[str] | None = None,
    label_map: str | os.PathLike | Mapping | LabelMap | None = None,
    site_sizes: Sequence[int] | str | None = None,
) -> Federation:
    """Build a named federated partition from the phantom or from a folder of MedMNIST ``.npz`` files.

    Args:
        scenario: one of :data:`SCENARIOS`.
        num_clients: number of sites, >= 1.
        seed: seeds every random choice (phantom seeds, label spaces, partitions); same seed, same federation.
        data_dir: ``None`` for the embedded phantom, else a folder of MedMNIST-v2 ``.npz`` files (or several:
            a sequence, or one string joined by ``os.pathsep``).
        image_size: phantom image size; for a folder, which size variant of each file to prefer and the
            size of sites mixing image sizes.
        samples_per_client: phantom: images per site before the 60/20/20 split (``None`` -> 240);
            folder: cap on each site's training images (``None`` keeps all).
        modalities: phantom: the modalities to use (default all of ``phantom.MODALITIES``); folder: keep
            only the files whose modality or flag is listed (e.g. ``["US", "XRAY"]``).
        label_map: a :class:`~.label_map.LabelMap`, a JSON file or a mapping
            ``{file stem: {source label: shared class name}}``; the files it names, in one shared label space
            (phantom: the one stem ``"phantom"``, source labels finding ids; the findings it maps are rendered).
        site_sizes: one ``samples_per_client`` per site (a sequence, or ``"400,400,60"``); empty or ``None``:
            every site ``samples_per_client``.

    Returns:
        The federation; see the module docstring for the partition rules.

    Raises:
        ValueError: for an unknown scenario, ``num_clients < 1``, too few sites for the files or too many
            for a file's smallest split, a bad ``modalities``/``samples_per_client``/``site_sizes``/``label_map``,
            a phantom label map naming another stem or finding, or ``cross_modality_shared`` on a folder without
            a label map.
        FileNotFoundError: when ``data_dir`` is not a folder or holds no ``.npz`` file, or a file the label
            map names is missing.
    """
    check_scenario_and_clients(scenario, SCENARIOS, num_clients)
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be >= 1.")
    if samples_per_client is not None and samples_per_client < 1:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 1 or None.")
    if label_map is not None and not isinstance(label_map, LabelMap):
        label_map = load_label_map(label_map)
    if data_dir is None:
        samples = _DEFAULT_PHANTOM_SAMPLES if samples_per_client is None else samples_per_client
        sizes = sizes_per_site(site_sizes, num_clients, samples)
        return _phantom_federation(scenario, num_clients, seed, image_size, sizes, modalities, label_map)
    folders = _folders(data_dir)
    if label_map is None and scenario == "cross_modality_shared":
        raise ValueError(
            f"scenario={scenario!r} on data_dir={[str(f) for f in folders]} needs label_map= (e.g. "
            "benchmarks/label_maps/medmnist_triage.json): each file has its own labels."
        )
    sizes = sizes_per_site(site_sizes, num_clients, samples_per_client)
    class_names, clients = npz_sites(scenario, num_clients, seed, folders, image_size, sizes, modalities, label_map)
    return Federation(scenario=scenario, seed=seed, class_names=class_names, clients=clients)
