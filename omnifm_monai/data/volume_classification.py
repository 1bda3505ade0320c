"""Whole-volume datalists for the classification bundle's 3D option (``configs/train_3d.json``).

:func:`load_volume_classification_split` gives ``[{"image": (C, S, S, S) float32 in [0, 1], "label": int64}]``
from one of two sources:

- ``None``, ``""`` or ``"phantom"``: 3D phantom volumes (all modalities, all findings), as the 2D phantom;
- a folder laid out ``<dir>/<split>/<class_name>/<volume>``, where a volume is a NIfTI file (``.nii``,
  ``.nii.gz``; 3D, or 4D with channels last) or a DICOM series folder (one folder of slices =
  one sample, read by :class:`~omnifm_monai.data.dicom_series.DicomSeriesReader`: stray files in it are
  named in a warning and skipped). Volumes may sit in sub-folders of a class folder. Label ids are the
  indices of :func:`~omnifm_monai.data.classification.class_names_for` (the sorted class folder names), as
  for 2D images.

Each volume is read with MONAI's ``LoadImage`` (``NibabelReader`` / ``DicomSeriesReader``), made channel
first, reoriented to RAS (so NIfTI and DICOM volumes share one voxel order), scaled to [0, 1] per volume,
given ``in_channels`` channels (:func:`~omnifm_monai.data.image_io.fix_channels`) and resized to
``image_size`` on every axis (:func:`~omnifm_monai.data.image_io.resize_images`). A 2D image, a single
DICOM file or a volume that cannot be read is logged (path and reason) and skipped. Volumes are read once,
at start, and kept in memory (``image_size ** 3 * in_channels * 4`` bytes each).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from monai.data import NibabelReader
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Orientation, ScaleIntensity
from monai.utils import convert_to_numpy

from omnifm_monai.data.classification import folder_split_files, phantom_classification_split
from omnifm_monai.data.dicom_series import DicomSeriesReader
from omnifm_monai.data.image_io import find_input_files, fix_channels, image_reader_kind, resize_images
from omnifm_monai.data.site_archive import SPLITS, is_phantom

__all__ = ["load_volume", "load_volume_classification_split", "volume_inference_datalist"]

logger = logging.getLogger(__name__)

_READERS = {"nibabel": NibabelReader, "dicom_series": DicomSeriesReader}
_NOT_A_VOLUME = "not a volume: expected a NIfTI file or a DICOM series folder (two or more positioned slices)"


def _check_args(image_size: int, in_channels: int) -> None:
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16 for volumes (the 3D ResNet downsamples four times).")
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} must be >= 1.")


def _volume_loader(kind: str) -> Compose:
    """Load -> channel first -> RAS -> [0, 1]: float ``(C, X, Y, Z)``."""
    return Compose(
        [
            LoadImage(reader=_READERS[kind](), image_only=True),
            EnsureChannelFirst(),
            Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            ScaleIntensity(minv=0.0, maxv=1.0),
        ]
    )


def load_volume(path: str | os.PathLike, *, image_size: int = 32, in_channels: int = 1) -> np.ndarray:
    """One NIfTI volume or DICOM series folder as float32 ``(in_channels, S, S, S)`` in [0, 1].

    Raises:
        ValueError: for a path that is not a volume or a volume its reader rejects (the message names the
            path and the reason).
    """
    _check_args(image_size, in_channels)
    path = Path(path).expanduser()
    kind = image_reader_kind(path) if path.exists() else None
    if kind not in _READERS:
        raise ValueError(f"'{path}': {_NOT_A_VOLUME}.")
    try:
        volume = convert_to_numpy(_volume_loader(kind)(str(path)), dtype=np.float32)  # (C, X, Y, Z)
    except Exception as e:  # readers raise many types; callers get one, with the reason kept
        raise ValueError(f"cannot read '{path}' as a volume: {type(e).__name__}: {e}") from e
    if volume.ndim != 4 or min(volume.shape[1:]) < 2:
        raise ValueError(f"'{path}': expected a 3D volume, got an array of shape {volume.shape} (channels first).")
    if not np.isfinite(volume).all():
        raise ValueError(f"'{path}': the volume contains NaN or infinite values.")
    volume = fix_channels(volume[None], in_channels, str(path))  # (1, C, X, Y, Z)
    return resize_images(volume, image_size)[0]  # (C, S, S, S)


def _folder_split(folder: Path, split: str, image_size: int, in_channels: int) -> list[dict]:
    split_dir = folder / split
    items = []
    for path, label in folder_split_files(folder, split):  # the 2D loader's walk: class folders, series folders
        try:
            image = load_volume(path, image_size=image_size, in_channels=in_channels)
        except ValueError as e:  # one bad volume must not stop the data set
            logger.warning("Skipping a volume: %s", e)
            continue
        items.append({"image": image, "label": np.int64(label)})
    if not items:
        raise ValueError(
            f"'{split_dir}' holds no readable volume; expected <class_name>/<NIfTI files or DICOM series folders>."
        )
    return items


def load_volume_classification_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 32,
    in_channels: int = 1,
    num_samples: int = 140,
    seed: int = 0,
) -> list[dict]:
    """The datalist of one split for the classification bundle's 3D option.

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, or a folder ``<dir>/<split>/<class_name>/<volumes>``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: size of every output spatial axis (>= 16).
        in_channels: channels out (gray repeated).
        num_samples: phantom only: volumes in this split, spread over all modalities.
        seed: phantom only: train/val/test draw from different seeds derived from it.

    Returns:
        ``[{"image": float32 (in_channels, S, S, S) in [0, 1], "label": np.int64}, ...]``.

    Raises:
        ValueError: for a bad argument, a folder not in the layout, a file given as ``dataset_dir`` or a split
            with no readable volume (the message names the folder).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    _check_args(image_size, in_channels)
    if is_phantom(dataset_dir):
        return phantom_classification_split(split, image_size, in_channels, num_samples, seed, spatial_dims=3)
    path = Path(dataset_dir).expanduser()
    if path.is_dir():
        return _folder_split(path, split, image_size, in_channels)
    if path.exists():
        raise ValueError(
            f"dataset_dir '{path}' is a file; the 3D option reads a folder <dir>/<split>/<class_name>/<volumes> "
            "(NIfTI files or DICOM series folders)."
        )
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


def volume_inference_datalist(
    input_path: str | os.PathLike, *, image_size: int = 32, in_channels: int = 1
) -> tuple[list[dict], list[dict]]:
    """The volumes to classify: a NIfTI file, a DICOM series folder, or every one below a folder.

    Returns:
        ``(items, skipped)`` as :func:`omnifm_monai.inference.inference_datalist`: ``items`` is
        ``[{"image": float32 (in_channels, S, S, S), "filename": str}]``, ``skipped`` is
        ``[{"filename": str, "reason": str}]`` (each also logged as a warning).

    Raises:
        ValueError: when no volume could be read.
    """
    items, skipped = [], []
    inputs = find_input_files(input_path)
    for path in inputs:
        try:
            items.append(
                {"image": load_volume(path, image_size=image_size, in_channels=in_channels), "filename": str(path)}
            )
        except ValueError as e:
            logger.warning("Skipping a volume: %s", e)
            skipped.append({"filename": str(path), "reason": str(e)})
    if not items:
        raise ValueError(
            f"no readable volume in '{input_path}': {len(inputs)} input(s) found, {len(skipped)} skipped "
            "(expected NIfTI files or DICOM series folders)."
        )
    return items, skipped
