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
  validation and test sets are never capped.
- Channels and sizes: a site that mixes gray and RGB sources stores everything as RGB (gray repeated
  over 3 channels); a site that mixes image sizes stores everything resized to ``image_size``. A
  single-source site keeps its source's layout; the classification data loader fixes channels and size.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize

from omnifm_monai.data.medmnist import SPLITS, ImageClassificationData, load_medmnist
from omnifm_monai.data.phantom import FINDINGS, MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import SiteLookup, markdown_table

__all__ = [
    "SCENARIOS",
    "FINDINGS_PER_MODALITY",
    "SPLIT_FRACTIONS",
    "MIN_CLIENTS_PER_FILE",
    "Federation",
    "build_federation",
    "sample_participants",
]

SCENARIOS: tuple[str, ...] = ("cross_modality_hard", "cross_modality_mixed", "iid")
"""Partition scenarios :func:`build_federation` knows."""

FINDINGS_PER_MODALITY = 3
"""Size of each phantom modality's label space in the cross-modality scenarios."""

SPLIT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
"""Train/val/test fractions of each phantom site's samples."""

MIN_CLIENTS_PER_FILE = 3
"""Sites each MedMNIST file gets first (when there are enough sites); the rest go by training-set size."""

_DEFAULT_PHANTOM_SAMPLES = 240
_SIZE_SUFFIX = re.compile(r"^(?P<flag>.+)_(?P<size>64|128|224)$")  # MedMNIST size variants

# one data source of a site before merging: (split -> (images uint8, labels int64), modality, source name)
_Block = tuple[dict[str, tuple[np.ndarray, np.ndarray]], str, str]


@dataclass(frozen=True)
class Federation(SiteLookup[ImageClassificationData]):
    """A federated partition: the global label space and one data set per site.

    Args:
        scenario: one of :data:`SCENARIOS`.
        seed: the seed it was built with.
        class_names: names of the global label space; global id ``i`` is ``class_names[i]``.
        clients: one data set per site, named ``site-1`` .. ``site-N``, labels in global ids.
    """

    scenario: str
    seed: int
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
        return _merge_blocks("pooled", blocks, self.class_names, image_size)

    def summary(self) -> str:
        """A Markdown table: site, modality, source, label space, sizes, train histogram, test majority rate.

        The majority-class rate is the test accuracy of always predicting the site's most frequent test
        class: the floor any personalised model must beat.
        """
        headers = (
            "site",
            "modality",
            "source",
            "label space",
            "train/val/test",
            "train histogram",
            "test majority",
        )
        rows = []
        for c in self.clients:
            train_labels = c.splits["train"][1] if "train" in c.splits else np.zeros(0, np.int64)
            test_labels = c.splits["test"][1] if "test" in c.splits else np.zeros(0, np.int64)
            ids, counts = np.unique(train_labels, return_counts=True)
            histogram = " ".join(f"{i}:{n}" for i, n in zip(ids.tolist(), counts.tolist()))
            majority = np.bincount(test_labels).max() / test_labels.size if test_labels.size else float("nan")
            rows.append(
                (
                    c.name,
                    c.modality,
                    c.source,
                    ",".join(str(i) for i in c.label_space),
                    "/".join(str(c.num_samples(s)) for s in SPLITS),
                    histogram,
                    f"{majority:.3f}",
                )
            )
        legend = ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        title = (
            f"Federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites, "
            f"{self.num_classes} classes ({legend})"
        )
        return f"{title}\n\n{markdown_table(headers, rows)}"


def sample_participants(num_clients: int, participation: float, round_num: int, seed: int) -> list[int]:
    """The sites taking part in a round (partial participation), deterministic per ``(seed, round_num)``.

    ``max(1, round_half_up(participation * num_clients))`` distinct sites are drawn uniformly.

    Args:
        num_clients: number of sites, >= 1.
        participation: fraction of sites per round, in (0, 1].
        round_num: the round, >= 0.
        seed: the experiment seed.

    Returns:
        Sorted site indices in ``0 .. num_clients - 1``.

    Raises:
        ValueError: when an argument is out of range.
    """
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")
    if not 0.0 < participation <= 1.0:
        raise ValueError(f"participation={participation} must be in (0, 1].")
    if round_num < 0:
        raise ValueError(f"round_num={round_num} must be >= 0.")
    k = min(num_clients, max(1, math.floor(participation * num_clients + 0.5)))
    rng = np.random.default_rng([seed, round_num])
    return sorted(int(i) for i in rng.choice(num_clients, size=k, replace=False))


def _stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``0..N-1`` in which every stratum is spread evenly.

    Each element gets the key ``(rank within its stratum + u_stratum) / stratum size`` (``u`` uniform in
    [0, 1)); sorting by the key interleaves the strata, so any contiguous slice of the result is stratified.
    """
    keys = np.empty(strata.shape[0], dtype=np.float64)
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        keys[members] = (np.arange(members.size) + rng.random()) / members.size
    return np.argsort(keys, kind="stable")


def _partition(labels: np.ndarray, num_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Divide indices of ``labels`` into ``num_parts`` disjoint, label-stratified parts of size +-1."""
    return [np.sort(part) for part in np.array_split(_stratified_order(labels, rng), num_parts)]


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Float ``(N, C, H, W)`` in [0, 1] -> uint8 ``(N, H, W)`` (C = 1) or ``(N, H, W, 3)`` (C = 3)."""
    quantised = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    if quantised.shape[1] == 1:
        return quantised[:, 0]  # (N, 1, H, W) -> (N, H, W)
    return np.ascontiguousarray(quantised.transpose(0, 2, 3, 1))  # NCHW -> NHWC


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``(N, S, S)``/``(N, S, S, 3)`` images to ``size`` (area to shrink, else bilinear)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    n = images.shape[0]
    rgb = images.ndim == 4
    stack = images.transpose(0, 3, 1, 2).reshape(-1, *images.shape[1:3]) if rgb else images  # (N*C, H, W)
    mode = "area" if images.shape[1] > size else "bilinear"
    resized = Resize((size, size), mode=mode)(torch.as_tensor(stack, dtype=torch.float32))  # channels = images
    out = np.rint(np.clip(np.asarray(resized), 0, 255)).astype(np.uint8)
    return np.ascontiguousarray(out.reshape(n, 3, size, size).transpose(0, 2, 3, 1)) if rgb else out


def _merge_blocks(
    name: str, blocks: Sequence[_Block], class_names: Sequence[str], image_size: int
) -> ImageClassificationData:
    """Concatenate a site's sources: RGB if any source is RGB, ``image_size`` if source sizes differ."""
    any_rgb = any(split[0].ndim == 4 for data, _, _ in blocks for split in data.values())
    sizes = {split[0].shape[1] for data, _, _ in blocks for split in data.values() if split[0].shape[0]}
    resize = len(sizes) > 1
    splits = {}
    for s in SPLITS:
        images, labels = [], []
        for data, _, _ in blocks:
            x, y = data[s]
            if any_rgb and x.ndim == 3:
                x = np.repeat(x[..., None], 3, axis=-1)  # gray (N, H, W) -> RGB (N, H, W, 3)
            if resize:
                x = _resize_uint8(x, image_size)
            images.append(x)
            labels.append(y)
        splits[s] = (np.concatenate(images), np.concatenate(labels).astype(np.int64))
    all_labels = np.concatenate([y for _, y in splits.values()])
    label_space = tuple(int(i) for i in np.unique(all_labels))
    return ImageClassificationData(
        name=name,
        modality="+".join(dict.fromkeys(m for _, m, _ in blocks)),
        class_names=tuple(class_names[i] for i in label_space),
        label_space=label_space,
        splits=splits,
        source="+".join(dict.fromkeys(src for _, _, src in blocks)),
    )


def _with_label_space(
    client: ImageClassificationData, label_space: Sequence[int], class_names: Sequence[str]
) -> ImageClassificationData:
    """The site with its label space widened to ``label_space`` (its sources' spaces, not only its labels)."""
    space = tuple(sorted(set(label_space) | set(client.label_space)))
    return ImageClassificationData(
        name=client.name,
        modality=client.modality,
        class_names=tuple(class_names[i] for i in space),
        label_space=space,
        splits=client.splits,
        source=client.source,
    )


def _shift_labels(data: ImageClassificationData, offset: int) -> ImageClassificationData:
    """``data`` with ``offset`` added to its labels and label space."""
    return ImageClassificationData(
        name=data.name,
        modality=data.modality,
        class_names=data.class_names,
        label_space=tuple(i + offset for i in data.label_space),
        splits={s: (x, y + offset) for s, (x, y) in data.splits.items()},
        source=data.source,
    )


def _sources_of_site(scenario: str, primary, pool: Sequence, rng: np.random.Generator) -> list:
    """What a site holds: its primary source (hard), every source (iid) or the primary plus 1-2 others."""
    if scenario == "cross_modality_hard":
        return [primary]
    if scenario == "iid":
        return list(pool)
    others = [p for p in pool if p != primary]
    count = min(len(others) + 1, int(rng.integers(2, 4)))  # 2 or 3 sources when there are enough
    picks = sorted(rng.choice(len(others), size=count - 1, replace=False).tolist()) if others else []
    return [primary, *(others[k] for k in picks)]


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
    samples: int,
    modalities: Sequence[str] | None,
) -> Federation:
    if modalities is None:
        modalities = MODALITIES
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities={list(modalities)} must be a non-empty subset of {MODALITIES}.")
    modalities = tuple(dict.fromkeys(modalities))
    if samples < 5:
        raise ValueError(f"samples_per_client={samples} must be >= 5 so that train, val and test are non-empty.")
    rng = np.random.default_rng([seed, len(modalities), num_clients])
    all_findings = tuple(range(len(FINDINGS)))
    spaces = (
        dict.fromkeys(modalities, all_findings)
        if scenario == "iid"
        else _modality_label_spaces(modalities, len(FINDINGS), seed)
    )
    base_seed = int(rng.integers(0, 2**31 - 1 - num_clients * len(modalities)))

    clients = []
    for i in range(num_clients):
        held = _sources_of_site(scenario, modalities[i % len(modalities)], modalities, rng)
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
            x = _to_uint8(np.asarray(ds.images))
            any_rgb |= x.ndim == 4
            images.append(x)
            labels.append(np.asarray(ds.labels, dtype=np.int64))
            strata.append(j * len(FINDINGS) + labels[-1])
        if any_rgb:
            images = [np.repeat(x[..., None], 3, axis=-1) if x.ndim == 3 else x for x in images]
        x_all, y_all, strata_all = np.concatenate(images), np.concatenate(labels), np.concatenate(strata)
        order = _stratified_order(strata_all, rng)
        n_train, n_val = round(SPLIT_FRACTIONS[0] * samples), round(SPLIT_FRACTIONS[1] * samples)
        cuts = np.split(order, [n_train, n_train + n_val])
        splits = {s: (x_all[np.sort(idx)], y_all[np.sort(idx)]) for s, idx in zip(SPLITS, cuts)}
        client = _merge_blocks(f"site-{i + 1}", [(splits, "+".join(held), "phantom")], FINDINGS, image_size)
        space = sorted({f for m in held for f in spaces[m]})
        clients.append(_with_label_space(client, space, FINDINGS))
    return Federation(scenario=scenario, seed=seed, class_names=tuple(FINDINGS), clients=tuple(clients))


def _discover_npz(data_dir: Path, image_size: int) -> list[Path]:
    """One file per flag in ``data_dir``: size ``image_size``, else 28 px, else the closest size."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir '{data_dir}' is not a folder of MedMNIST .npz files.")
    groups: dict[str, dict[int, Path]] = {}
    for path in sorted(data_dir.glob("*.npz")):
        stem = path.name[: -len(".npz")]
        match = _SIZE_SUFFIX.match(stem)
        flag, size = (match.group("flag"), int(match.group("size"))) if match else (stem, 28)
        groups.setdefault(flag, {})[size] = path
    if not groups:
        raise FileNotFoundError(f"data_dir '{data_dir}' holds no .npz files.")
    chosen = []
    for flag in sorted(groups):
        by_size = groups[flag]
        size = image_size if image_size in by_size else 28 if 28 in by_size else None
        if size is None:
            size = min(by_size, key=lambda s: (abs(s - image_size), s))
        chosen.append(by_size[size])
    return chosen


def _clients_per_file(train_sizes: Sequence[int], num_clients: int) -> list[int]:
    """``min(3, K // F)`` sites per file, the rest in proportion to training-set size (largest remainder)."""
    num_files = len(train_sizes)
    base = min(MIN_CLIENTS_PER_FILE, num_clients // num_files)
    counts = [base] * num_files
    rest = num_clients - base * num_files
    if rest:
        quotas = rest * np.asarray(train_sizes, dtype=np.float64) / max(1, sum(train_sizes))
        floors = np.floor(quotas).astype(int)
        order = sorted(range(num_files), key=lambda f: (-(quotas[f] - floors[f]), f))
        for f in order[: rest - int(floors.sum())]:
            floors[f] += 1
        counts = [c + int(extra) for c, extra in zip(counts, floors)]
    return counts


def _round_robin(counts: Sequence[int]) -> list[int]:
    """Primary file of each site: cycle over files with sites left to give (``[3, 4, 3]`` -> 0120120121)."""
    left = list(counts)
    order = []
    while any(left):
        for f, n in enumerate(left):
            if n:
                order.append(f)
                left[f] -= 1
    return order


def _npz_federation(
    scenario: str,
    num_clients: int,
    seed: int,
    data_dir: Path,
    image_size: int,
    samples: int | None,
    modalities: Sequence[str] | None,
) -> Federation:
    files = _discover_npz(data_dir, image_size)
    loaded = [load_medmnist(f, prefix_class_names=True) for f in files]
    if modalities is not None:
        wanted = {m.lower() for m in modalities}
        kept = [d for d in loaded if d.modality.lower() in wanted or d.name.lower() in wanted]
        if not kept:
            raise ValueError(
                f"modalities={list(modalities)} match none of the files in '{data_dir}': "
                f"{[(d.name, d.modality) for d in loaded]}."
            )
        loaded = kept
    # disjoint label offsets, in flag order
    datasets, offset = [], 0
    for d in loaded:
        datasets.append(_shift_labels(d, offset))
        offset += max(d.label_space) + 1
    class_names = ["" for _ in range(offset)]
    for d in datasets:
        for i, n in zip(d.label_space, d.class_names):
            class_names[i] = n
    class_names = [n or f"class_{i}" for i, n in enumerate(class_names)]

    rng = np.random.default_rng([seed, len(datasets), num_clients])
    num_files = len(datasets)
    if scenario == "iid":
        holders_of = [list(range(num_clients)) for _ in datasets]
    else:
        if num_clients < num_files:
            raise ValueError(
                f"num_clients={num_clients} is too small for scenario '{scenario}' over {num_files} files "
                f"{[d.source for d in datasets]}: every file needs at least one site; pass num_clients >= "
                f"{num_files} or select files with modalities=."
            )
        primary = _round_robin(_clients_per_file([d.num_samples("train") for d in datasets], num_clients))
        held = [_sources_of_site(scenario, p, range(num_files), rng) for p in primary]
        holders_of = [[i for i in range(num_clients) if f in held[i]] for f in range(num_files)]

    # per site: list of blocks (its part of each file it holds)
    blocks: list[list[_Block]] = [[] for _ in range(num_clients)]
    for d, holders in zip(datasets, holders_of):
        smallest = min(d.num_samples(s) for s in SPLITS)
        if len(holders) > smallest:
            raise ValueError(
                f"'{d.source}' has only {smallest} images in its smallest split but {len(holders)} sites "
                "hold it; expected at least one image per site and split: use fewer clients."
            )
        parts = {s: _partition(d.splits[s][1], len(holders), rng) for s in SPLITS}
        for j, i in enumerate(holders):
            split_j = {s: (d.splits[s][0][parts[s][j]], d.splits[s][1][parts[s][j]]) for s in SPLITS}
            blocks[i].append((split_j, d.modality, d.source))

    clients = []
    for site in range(num_clients):
        client = _merge_blocks(f"site-{site + 1}", blocks[site], class_names, image_size)
        if samples is not None and client.num_samples("train") > samples:
            x, y = client.splits["train"]
            keep = np.sort(_stratified_order(y, rng)[:samples])
            client = ImageClassificationData(
                name=client.name,
                modality=client.modality,
                class_names=client.class_names,
                label_space=client.label_space,
                splits={**client.splits, "train": (x[keep], y[keep])},
                source=client.source,
            )
        space = [k for d, holders in zip(datasets, holders_of) if site in holders for k in d.label_space]
        clients.append(_with_label_space(client, space, class_names))
    return Federation(scenario=scenario, seed=seed, class_names=tuple(class_names), clients=tuple(clients))


def build_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = 240,
    modalities: Sequence[str] | None = None,
) -> Federation:
    """Build a named federated partition from the phantom or from a folder of MedMNIST ``.npz`` files.

    Args:
        scenario: one of :data:`SCENARIOS`.
        num_clients: number of sites, >= 1.
        seed: seeds every random choice (phantom seeds, label spaces, partitions); same seed, same federation.
        data_dir: ``None`` for the embedded phantom, else a folder of MedMNIST-v2 ``.npz`` files.
        image_size: phantom image size; for a folder, which size variant of each file to prefer and the
            size of sites mixing image sizes.
        samples_per_client: phantom: images per site before the 60/20/20 split (``None`` -> 240);
            folder: cap on each site's training images (``None`` keeps all).
        modalities: phantom: the modalities to use (default all of ``phantom.MODALITIES``); folder: keep
            only the files whose modality or flag is listed (e.g. ``["US", "XRAY"]``).

    Returns:
        The federation; see the module docstring for the partition rules.

    Raises:
        ValueError: for an unknown scenario, ``num_clients < 1``, too few sites for the files or too many
            for a file's smallest split, or a bad ``modalities``/``samples_per_client``.
        FileNotFoundError: when ``data_dir`` is not a folder or holds no ``.npz`` file.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not supported; expected one of {SCENARIOS}.")
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be >= 1.")
    if samples_per_client is not None and samples_per_client < 1:
        raise ValueError(f"samples_per_client={samples_per_client} must be >= 1 or None.")
    if data_dir is None:
        samples = _DEFAULT_PHANTOM_SAMPLES if samples_per_client is None else samples_per_client
        return _phantom_federation(scenario, num_clients, seed, image_size, samples, modalities)
    return _npz_federation(
        scenario, num_clients, seed, Path(data_dir).expanduser(), image_size, samples_per_client, modalities
    )
