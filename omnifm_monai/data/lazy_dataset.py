"""Datasets that read image files when an item is asked for, with MONAI's memory or disk cache.

The items are ``[{"image": path, "label": np.int64}, ...]``; :class:`LoadImageFiled` (a MONAI ``MapTransform``)
reads and preprocesses each file exactly like the eager loaders (:func:`omnifm_monai.data.image_io.load_image_file`:
MONAI's ``LoadImage`` with the reader for the file's type, [0, 1] scaling, ``in_channels`` channels,
``image_size`` x ``image_size``), first in the dataset's transform. :func:`file_dataset` wraps them by
``cache``:

- ``"none"``: ``monai.data.Dataset``; every epoch reads every file again (the least memory).
- ``"memory"``: ``monai.data.CacheDataset``; the deterministic transforms' output of every item is kept in
  memory, computed at start (as much memory as the eager loader, through MONAI transforms).
- ``"disk"``: ``monai.data.PersistentDataset`` under ``cache_dir``; an item is preprocessed the first time it
  is asked for and written to disk, later epochs and later runs read it back. The cache key holds the file's
  path, size and modification time; the folder name holds the image size and channels, so changing either
  (or the file) never reads a stale image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.transforms import Compose, MapTransform
from monai.utils import look_up_option

from omnifm_monai.data.image_io import load_image_file

__all__ = ["FILE_CACHES", "LoadImageFiled", "file_dataset", "file_item_hash"]

FILE_CACHES: tuple[str, ...] = ("none", "memory", "disk")
"""The ``cache`` values of :func:`file_dataset`."""


class LoadImageFiled(MapTransform):
    """Read the image file at ``d[key]`` into float32 ``(in_channels, image_size, image_size)`` in [0, 1].

    Args:
        keys: the keys holding file paths.
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.

    Raises:
        ValueError: when a file cannot be read (the message names the file, the reader and its error).
    """

    def __init__(self, keys: KeysCollection, image_size: int, in_channels: int) -> None:
        super().__init__(keys)
        self.image_size, self.in_channels = image_size, in_channels

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_image_file(d[key], image_size=self.image_size, in_channels=self.in_channels)
        return d


def file_item_hash(item: Mapping) -> bytes:
    """``PersistentDataset``'s cache key: the item with its image file's resolved path, size and mtime."""
    stat = os.stat(item["image"])
    key = {**item, "image": str(Path(item["image"]).resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return pickle_hashing({k: str(v) for k, v in key.items()})


def file_dataset(
    items: Sequence[dict],
    transform: Callable | Sequence[Callable] | None,
    *,
    image_size: int,
    in_channels: int,
    cache: str = "none",
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A MONAI dataset over image files: :class:`LoadImageFiled`, then ``transform``, cached by ``cache``.

    Args:
        items: ``[{"image": path, "label": ...}, ...]`` (numpy scalars become Python numbers).
        transform: the bundle's preprocessing (a ``Compose``, a list of transforms or ``None``).
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.
        cache: ``"none"``, ``"memory"`` or ``"disk"`` (see the module docstring).
        cache_dir: ``"disk"`` only: the site's cache folder (a sub-folder per image size and channels).

    Returns:
        ``Dataset``, ``CacheDataset`` or ``PersistentDataset``; its ``data`` are ``items``.

    Raises:
        ValueError: for an unknown ``cache`` or ``"disk"`` without ``cache_dir``.
    """
    cache = look_up_option(cache, FILE_CACHES)
    if transform is None:
        steps = []
    elif isinstance(transform, Compose):
        steps = list(transform.transforms)
    elif isinstance(transform, Sequence):
        steps = list(transform)
    else:
        steps = [transform]
    pipeline = Compose([LoadImageFiled("image", image_size, in_channels), *steps])
    # numpy scalars (np.int64 labels) as Python numbers: torch.load(weights_only=True) refuses them in the disk cache
    items = [{k: v.item() if isinstance(v, np.generic) else v for k, v in item.items()} for item in items]
    if cache == "memory":
        return CacheDataset(items, pipeline, progress=False)
    if cache == "disk":
        if not cache_dir:
            raise ValueError("cache='disk' needs cache_dir (the site's folder for preprocessed images).")
        folder = Path(cache_dir).expanduser() / f"images_{image_size}px_{in_channels}ch"
        return PersistentDataset(items, pipeline, cache_dir=folder, hash_func=file_item_hash)
    return Dataset(items, pipeline)
