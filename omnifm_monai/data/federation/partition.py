"""Label-stratified partitions and the merging of a site's sources (the classification federations' tools)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import Resize

from omnifm_monai.data.medmnist import ImageClassificationData
from omnifm_monai.data.site_archive import SPLITS

__all__ = [
    "Block",
    "stratified_order",
    "partition",
    "merge_blocks",
    "with_label_space",
    "shift_labels",
    "sources_of_site",
]

# one data source of a site before merging: (split -> (images uint8, labels int64), modality, source name)
Block = tuple[dict[str, tuple[np.ndarray, np.ndarray]], str, str]


def stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``0..N-1`` in which every stratum is spread evenly.

    Each element gets the key ``(rank within its stratum + u_stratum) / stratum size`` (``u`` uniform in
    [0, 1)); sorting by the key interleaves the strata, so any contiguous slice of the result is stratified.
    """
    keys = np.empty(strata.shape[0], dtype=np.float64)
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        keys[members] = (np.arange(members.size) + rng.random()) / members.size
    return np.argsort(keys, kind="stable")


def partition(labels: np.ndarray, num_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Divide indices of ``labels`` into ``num_parts`` disjoint, label-stratified parts of size +-1."""
    return [np.sort(part) for part in np.array_split(stratified_order(labels, rng), num_parts)]


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


def merge_blocks(
    name: str, blocks: Sequence[Block], class_names: Sequence[str], image_size: int
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


def with_label_space(
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


def shift_labels(data: ImageClassificationData, offset: int) -> ImageClassificationData:
    """``data`` with ``offset`` added to its labels and label space."""
    return ImageClassificationData(
        name=data.name,
        modality=data.modality,
        class_names=data.class_names,
        label_space=tuple(i + offset for i in data.label_space),
        splits={s: (x, y + offset) for s, (x, y) in data.splits.items()},
        source=data.source,
    )


def sources_of_site(scenario: str, primary, pool: Sequence, rng: np.random.Generator) -> list:
    """What a site holds: its primary source (hard, shared), every source (iid) or the primary plus 1-2 others."""
    if scenario in ("cross_modality_hard", "cross_modality_shared"):
        return [primary]
    if scenario == "iid":
        return list(pool)
    others = [p for p in pool if p != primary]
    count = min(len(others) + 1, int(rng.integers(2, 4)))  # 2 or 3 sources when there are enough
    picks = sorted(rng.choice(len(others), size=count - 1, replace=False).tolist()) if others else []
    return [primary, *(others[k] for k in picks)]
