"""Classification sites from a folder of MedMNIST-v2 ``.npz`` files (one file = one modality, own label space).

See :mod:`omnifm_monai.data.federation.classification` for the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omnifm_monai.data.federation.label_map import LabelMap, find_mapped_files
from omnifm_monai.data.federation.partition import (
    Block,
    merge_blocks,
    partition,
    shift_labels,
    sources_of_site,
    stratified_order,
    with_label_space,
)
from omnifm_monai.data.medmnist import ImageClassificationData, load_medmnist, medmnist_flag_and_size
from omnifm_monai.data.site_archive import SPLITS

__all__ = ["MIN_CLIENTS_PER_FILE", "npz_sites"]

MIN_CLIENTS_PER_FILE = 3
"""Sites each MedMNIST file gets first (when there are enough sites); the rest go by training-set size."""


def _discover_npz(folders: Sequence[Path], image_size: int) -> list[Path]:
    """One file per flag in the folders: size ``image_size``, else 28 px, else the closest size (the first
    folder holding a flag's size wins)."""
    groups: dict[str, dict[int, Path]] = {}
    for data_dir in folders:
        if not data_dir.is_dir():
            raise FileNotFoundError(f"data_dir '{data_dir}' is not a folder of MedMNIST .npz files.")
        for path in sorted(data_dir.glob("*.npz")):
            flag, size = medmnist_flag_and_size(path.name[: -len(".npz")])
            groups.setdefault(flag, {}).setdefault(size, path)
    if not groups:
        raise FileNotFoundError(f"data_dir {[str(f) for f in folders]} holds no .npz files.")
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


def _offset_label_spaces(loaded: Sequence[ImageClassificationData]) -> tuple[list[str], list[ImageClassificationData]]:
    """Disjoint label offsets in file order; the global class names (prefixed by the file's name)."""
    datasets, offset = [], 0
    for d in loaded:
        datasets.append(shift_labels(d, offset))
        offset += max(d.label_space) + 1
    class_names = ["" for _ in range(offset)]
    for d in datasets:
        for i, n in zip(d.label_space, d.class_names):
            class_names[i] = n
    return [n or f"class_{i}" for i, n in enumerate(class_names)], datasets


def npz_sites(
    scenario: str,
    num_clients: int,
    seed: int,
    folders: Sequence[Path],
    image_size: int,
    sizes: Sequence[int | None],
    modalities: Sequence[str] | None,
    label_map: LabelMap | None = None,
) -> tuple[tuple[str, ...], tuple[ImageClassificationData, ...]]:
    """The global class names and the sites of a MedMNIST folder federation (arguments as ``build_federation``;
    ``sizes``: each site's training cap, ``None`` keeps all)."""
    if label_map is None:
        loaded = [load_medmnist(f, prefix_class_names=True) for f in _discover_npz(folders, image_size)]
    else:
        files = find_mapped_files(label_map, folders)
        loaded = [label_map.apply(load_medmnist(f), stem) for f, stem in zip(files, label_map.stems)]
    if modalities is not None:
        wanted = {m.lower() for m in modalities}
        kept = [d for d in loaded if d.modality.lower() in wanted or d.name.lower() in wanted]
        if not kept:
            raise ValueError(
                f"modalities={list(modalities)} match none of the files in {[str(f) for f in folders]}: "
                f"{[(d.name, d.modality) for d in loaded]}."
            )
        loaded = kept
    if label_map is None:
        class_names, datasets = _offset_label_spaces(loaded)
    else:
        class_names, datasets = list(label_map.class_names), loaded

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
        held = [sources_of_site(scenario, p, range(num_files), rng) for p in primary]
        holders_of = [[i for i in range(num_clients) if f in held[i]] for f in range(num_files)]

    # per site: list of blocks (its part of each file it holds)
    blocks: list[list[Block]] = [[] for _ in range(num_clients)]
    for d, holders in zip(datasets, holders_of):
        smallest = min(d.num_samples(s) for s in SPLITS)
        if len(holders) > smallest:
            raise ValueError(
                f"'{d.source}' has only {smallest} images in its smallest split but {len(holders)} sites "
                "hold it; expected at least one image per site and split: use fewer clients."
            )
        parts = {s: partition(d.splits[s][1], len(holders), rng) for s in SPLITS}
        for j, i in enumerate(holders):
            split_j = {s: (d.splits[s][0][parts[s][j]], d.splits[s][1][parts[s][j]]) for s in SPLITS}
            blocks[i].append((split_j, d.modality, d.source))

    clients = []
    for site, samples in enumerate(sizes):
        client = merge_blocks(f"site-{site + 1}", blocks[site], class_names, image_size)
        if samples is not None and client.num_samples("train") > samples:
            x, y = client.splits["train"]
            keep = np.sort(stratified_order(y, rng)[:samples])
            client = ImageClassificationData(
                name=client.name,
                modality=client.modality,
                class_names=client.class_names,
                label_space=client.label_space,
                splits={**client.splits, "train": (x[keep], y[keep])},
                source=client.source,
            )
        space = [k for d, holders in zip(datasets, holders_of) if site in holders for k in d.label_space]
        if scenario == "cross_modality_shared":
            space = range(len(class_names))  # the fixed task: every site the whole shared label space
        clients.append(with_label_space(client, space, class_names))
    return tuple(class_names), tuple(clients)
