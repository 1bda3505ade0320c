"""Datalists for the classification bundle: ``[{"image": (C, S, S) float32 in [0, 1], "label": int64}, ...]``.

:func:`load_classification_split` turns one of five sources into the list a MONAI ``Dataset`` takes:

- ``None``, ``""`` or ``"phantom"``: a centralised phantom (all modalities, all findings).
- a ``.npz`` file in the MedMNIST-v2 layout (an official file or one site's export of a federation).
- a folder of image files laid out ``<dir>/<split>/<class_name>/...`` (files may sit in sub-folders of a
  class folder), the way a hospital exports images: PNG/JPEG/TIFF/BMP, NIfTI, single DICOM files and DICOM
  series folders (one sample: the middle slice, as for a NIfTI volume).
- a MONAI datalist ``.json`` or a ``.csv`` (``image,label[,split][,patient_id]``) listing image files and
  their labels; unsplit files are split for the user (:mod:`omnifm_monai.data.label_files`).

Image files are read and preprocessed by :mod:`omnifm_monai.data.image_io` (readers by extension, then
magic bytes; [0, 1] scaling, ``in_channels`` channels, ``image_size`` x ``image_size``). A file that cannot be
read is logged with ``logging.getLogger(__name__).warning`` (path and reason) and skipped.

:func:`classification_dataset` builds the bundle's MONAI dataset: these arrays (``cache="eager"``), or for the
file sources, items that hold file paths, read when asked for and cached by MONAI in memory or on disk
(:mod:`omnifm_monai.data.lazy_dataset`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import Dataset
from monai.utils import look_up_option

from omnifm_monai.data.federation_classes import federation_label_ids, held_classes, relabel
from omnifm_monai.data.image_io import (
    check_image_args,
    find_input_files,
    fix_channels,
    from_uint8,
    image_reader_kind,
    resize_images,
    shared_image_reader,
)
from omnifm_monai.data.label_files import is_label_file, read_label_file
from omnifm_monai.data.lazy_dataset import FILE_CACHES, file_dataset
from omnifm_monai.data.medmnist import load_medmnist
from omnifm_monai.data.phantom import FINDINGS, MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import SPLITS, is_phantom

__all__ = [
    "DATASET_CACHES",
    "load_classification_split",
    "classification_files",
    "classification_dataset",
    "class_names_for",
    "folder_split_files",
    "phantom_classification_split",
]

DATASET_CACHES: tuple[str, ...] = ("eager", *FILE_CACHES)
"""The bundle's ``dataset_cache`` values: ``"eager"`` (every image read at start) or a :func:`file_dataset` cache."""

logger = logging.getLogger(__name__)


def _check_args(split: str, image_size: int, in_channels: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    check_image_args(image_size, in_channels)


def _as_datalist(images: np.ndarray | list[np.ndarray], labels: np.ndarray | list[int]) -> list[dict]:
    return [{"image": np.ascontiguousarray(x, dtype=np.float32), "label": np.int64(y)} for x, y in zip(images, labels)]


def phantom_classification_split(
    split: str, image_size: int, in_channels: int, num_samples: int, seed: int, spatial_dims: int = 2
) -> list[dict]:
    """All phantom modalities and findings, ``num_samples`` images (``spatial_dims=3``: volumes) in total;
    each split has its own seeds."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1.")
    split_index = SPLITS.index(split)
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    images, labels = [], []
    for m, (modality, n) in enumerate(zip(MODALITIES, counts)):
        if n == 0:
            continue
        phantom_seed = (seed * len(SPLITS) + split_index) * len(MODALITIES) + m  # distinct per split/modality
        ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=spatial_dims, seed=phantom_seed)
        images.append(fix_channels(np.asarray(ds.images, dtype=np.float32), in_channels))
        labels.append(np.asarray(ds.labels, dtype=np.int64))
    order = np.random.default_rng([seed, split_index]).permutation(num_samples)  # interleave modalities
    return _as_datalist(np.concatenate(images)[order], np.concatenate(labels)[order])


def _npz_split(path: Path, split: str, image_size: int, in_channels: int) -> list[dict]:
    data = load_medmnist(path)
    raw, labels = data.splits[split]
    images = fix_channels(resize_images(from_uint8(raw), image_size), in_channels)  # (N, C, S, S)
    return _as_datalist(images, labels)


def _split_dirs(folder: Path) -> list[Path]:
    return [folder / s for s in SPLITS if (folder / s).is_dir()]


def _folder_class_names(folder: Path) -> tuple[str, ...]:
    split_dirs = _split_dirs(folder)
    if not split_dirs:
        hint = " It holds .npz files: pass the path of one file." if any(folder.glob("*.npz")) else ""
        raise ValueError(
            f"'{folder}' has none of the split folders {SPLITS}; expected the layout "
            f"<dir>/<split>/<class_name>/<image files>.{hint}"
        )
    names = {c.name for d in split_dirs for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")}
    if not names:
        raise ValueError(f"'{folder}' has no class folders; expected <dir>/<split>/<class_name>/<image files>.")
    return tuple(sorted(names))


def folder_split_files(folder: Path, split: str) -> list[tuple[Path, int]]:
    """``[(image file, label id), ...]`` of one split folder; files no reader takes are logged and skipped."""
    class_names = _folder_class_names(folder)
    split_dir = folder / split
    if not split_dir.is_dir():
        raise ValueError(f"'{split_dir}' does not exist; expected <dir>/{split}/<class_name>/<image files>.")
    files = []
    for label, class_name in enumerate(class_names):
        class_dir = split_dir / class_name
        if not class_dir.is_dir():
            continue
        for path in find_input_files(class_dir):  # files, and each DICOM series folder as one input
            if image_reader_kind(path) is None:
                logger.warning("Skipping '%s': not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.", path)
                continue
            files.append((path, label))
    return files


def _file_list(path: Path, split: str, seed: int) -> tuple[list[tuple[Path, int]], Path]:
    """The split's ``(image file, label id)`` pairs of a folder or label file, and what to name in errors."""
    if path.is_dir():
        return folder_split_files(path, split), path / split
    return read_label_file(path, seed=seed).items[split], path


def _read_files(files: list[tuple[Path, int]], source: Path, image_size: int, in_channels: int) -> list[dict]:
    """Every readable file as an array item; unreadable files are logged and skipped."""
    reader = shared_image_reader()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path, label in files:
        kind = image_reader_kind(path)
        if kind is None:
            logger.warning("Skipping '%s': not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.", path)
            continue
        try:
            image = reader(path, kind)
        except Exception as e:  # any failure of one file must not stop the data set
            logger.warning("Skipping unreadable image '%s' (%s reader): %s: %s", path, kind, type(e).__name__, e)
            continue
        images.append(fix_channels(resize_images(image[None], image_size), in_channels)[0])
        labels.append(label)
    if not images:
        expected = "<class_name>/<image files> inside it" if source.is_dir() else "readable image files listed"
        raise ValueError(f"'{source}' holds no readable image for this split; expected {expected}.")
    return _as_datalist(images, labels)  # each image its own array: no stacked copy (half the peak memory)


def _is_file_source(path: Path) -> bool:
    return path.is_dir() or (path.is_file() and is_label_file(path))


def load_classification_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    num_samples: int = 600,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> list[dict]:
    """The datalist of one split for the classification bundle.

    Args:
        dataset_dir: ``None``, ``""`` or ``"phantom"`` for the centralised phantom; the path of a MedMNIST
            layout ``.npz`` file; a folder laid out ``<dir>/<split>/<class_name>/<image files>`` (class
            names sorted give the label ids); or a datalist ``.json`` / label ``.csv``
            (:mod:`omnifm_monai.data.label_files`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.
        num_samples: phantom only: images in this split, spread over all modalities.
        seed: phantom: train/val/test draw from different seeds derived from it; label files: the seed of
            the split of what the file leaves unsplit.
        class_names: the federation's class names (:mod:`omnifm_monai.data.federation_classes`): labels
            become indices in this list; the data's classes must be among them. ``None``: the data's own ids.

    Returns:
        ``[{"image": float32 (in_channels, image_size, image_size) in [0, 1], "label": np.int64}, ...]``;
        labels are global ids (phantom finding ids, the ``.npz`` file's stored ids, the folder's sorted
        class index or the label file's ids), or indices in ``class_names`` when given.

    Raises:
        ValueError: for a bad argument, an unreadable ``.npz``, a folder not in the expected layout, a bad
            label file entry or a split with no readable image (the message names the folder or file).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    return _in_federation_ids(_load_split(dataset_dir, split, image_size, in_channels, num_samples, seed),
                              dataset_dir, class_names)  # fmt: skip


def _in_federation_ids(items: list[dict], dataset_dir, class_names: Sequence[str] | None) -> list[dict]:
    """``items`` relabelled into the federation's ids (``class_names``); as they are for ``None``."""
    if class_names is None:
        return items
    ids = federation_label_ids(held_classes(dataset_dir), class_names, where=f"dataset_dir '{dataset_dir}'")
    return relabel(items, ids)


def _load_split(dataset_dir, split: str, image_size: int, in_channels: int, num_samples: int, seed: int) -> list[dict]:
    _check_args(split, image_size, in_channels)
    if is_phantom(dataset_dir):
        return phantom_classification_split(split, image_size, in_channels, num_samples, seed)
    path = Path(dataset_dir).expanduser()
    if _is_file_source(path):
        return _read_files(*_file_list(path, split, seed), image_size, in_channels)
    if path.is_file():
        if path.name.lower().endswith(".npz"):
            return _npz_split(path, split, image_size, in_channels)
        raise ValueError(
            f"dataset_dir '{path}' is a file but not a .npz, .json or .csv; expected None/'phantom', a MedMNIST "
            ".npz file, a datalist .json, a label .csv or a folder laid out <dir>/<split>/<class_name>/<image files>."
        )
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


def classification_files(dataset_dir: str | os.PathLike, split: str, *, seed: int = 0) -> list[dict]:
    """The split's items as file paths, ``[{"image": str path, "label": np.int64}, ...]``, for lazy loading.

    Args:
        dataset_dir: a folder laid out ``<dir>/<split>/<class_name>/<image files>``, a datalist ``.json`` or a
            label ``.csv`` (as for :func:`load_classification_split`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: label files: the seed of the split of what the file leaves unsplit.

    Raises:
        ValueError: for a source that holds no image files (phantom, ``.npz``), a bad layout or entry, or a
            split that lists no image.
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if is_phantom(dataset_dir):
        raise ValueError("the phantom has no image files; use dataset_cache='eager' for it.")
    path = Path(dataset_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
    if not _is_file_source(path):
        raise ValueError(f"dataset_dir '{path}' holds no image files to read lazily; expected a folder, .json or .csv.")
    files, source = _file_list(path, split, seed)
    if not files:
        raise ValueError(f"'{source}' lists no image for split {split!r}; expected image files with labels.")
    return [{"image": str(file), "label": np.int64(label)} for file, label in files]


def classification_dataset(
    dataset_dir: str | os.PathLike | None,
    split: str,
    transform=None,
    *,
    cache: str = "eager",
    cache_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    in_channels: int = 3,
    num_samples: int = 600,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """The bundle's MONAI dataset of one split.

    Args:
        dataset_dir, split, image_size, in_channels, num_samples, seed, class_names: as for
            :func:`load_classification_split`.
        transform: the bundle's preprocessing.
        cache: ``"eager"``: every image read into memory at start (:func:`load_classification_split`), the
            only way for the phantom and ``.npz`` sources, which hold no files (they ignore ``cache``);
            ``"none"``, ``"memory"`` or ``"disk"``: folders and label files are read item by item through
            :func:`omnifm_monai.data.lazy_dataset.file_dataset`.
        cache_dir: ``"disk"`` only: where the preprocessed images are kept (the site's workspace).

    Returns:
        A ``Dataset`` over array items (``"eager"``) or over file items (``Dataset``, ``CacheDataset``,
        ``PersistentDataset``).

    Raises:
        ValueError, FileNotFoundError: as for :func:`load_classification_split`, or an unknown ``cache``.
    """
    cache = look_up_option(cache, DATASET_CACHES)
    check_image_args(image_size, in_channels)
    lazy = cache != "eager" and not is_phantom(dataset_dir) and _is_file_source(Path(dataset_dir).expanduser())
    if not lazy:
        data = load_classification_split(
            dataset_dir,
            split,
            image_size=image_size,
            in_channels=in_channels,
            num_samples=num_samples,
            seed=seed,
            class_names=class_names,
        )
        return Dataset(data, transform)
    items = _in_federation_ids(classification_files(dataset_dir, split, seed=seed), dataset_dir, class_names)
    return file_dataset(
        items, transform, image_size=image_size, in_channels=in_channels, cache=cache, cache_dir=cache_dir
    )


def class_names_for(dataset_dir: str | os.PathLike | None) -> tuple[str, ...]:
    """Class names indexed by label id, for the bundle's metadata and inference output.

    Args:
        dataset_dir: as for :func:`load_classification_split`.

    Returns:
        Phantom: the phantom's findings. ``.npz``: names for ids ``0 .. max(label_space)`` (ids outside the
        file's label space, e.g. other sites' classes in a federation export, are ``"class_{i}"``).
        Folder: the sorted class folder names over all splits. Label file: its class names sorted, or for
        integer labels ``"class_{i}"`` (or the JSON's ``labels`` names) for ids ``0 .. max``.

    Raises:
        ValueError, FileNotFoundError: as for :func:`load_classification_split`.
    """
    if is_phantom(dataset_dir):
        return tuple(FINDINGS)
    path = Path(dataset_dir).expanduser()
    if path.is_dir():
        return _folder_class_names(path)
    if path.is_file() and is_label_file(path):
        return read_label_file(path).class_names
    if path.is_file() and path.name.lower().endswith(".npz"):
        data = load_medmnist(path)
        known = dict(zip(data.label_space, data.class_names))
        size = max(data.label_space) + 1 if data.label_space else 0
        return tuple(known.get(i, f"class_{i}") for i in range(size))
    if path.is_file():
        raise ValueError(f"dataset_dir '{path}' is a file but not a .npz, .json or .csv.")
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
