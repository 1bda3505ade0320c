"""Super-resolution data: HR/LR datalists, site archives and the inference datalist.

Every LR input derives from its HR image by :func:`omnifm_monai.data.degradation.degrade_bicubic` (the one
degradation model), seeded per split.

Sources (:func:`load_super_resolution_split`), each giving ``[{"image": LR float32 (C, S/scale, S/scale),
"label": HR float32 (C, S, S)}]`` in [0, 1]:

- ``None`` / ``""`` / ``"phantom"``: ``num_samples`` phantom HR images over all seven modalities (pathology
  RGB, the others gray), shuffled with ``seed`` and split 60/20/20;
- a site ``.npz`` written by :meth:`SuperResolutionData.save_npz` (uint8 HR images per split, or uint16 for
  16-bit sources: the real-data federation, :mod:`omnifm_monai.data.federation.super_resolution_sources`);
- a folder of PNG/JPEG/TIFF/BMP, NIfTI (middle slice), DICOM images or DICOM series folders (middle slice),
  laid out ``<dir>/<split>/...``
  (searched recursively) or flat (every file below the folder, split 60/20/20 by a seeded permutation of
  the sorted file list). Each image is scaled to [0, 1] (min-max, the classification readers), centre
  cropped to a square and resized (area) to ``image_size``. Unreadable files are logged and skipped.

Channels: sites store images in their native channel count (gray ``(N, S, S)``, RGB ``(N, S, S, 3)``,
MedMNIST-like); the loader converts at load time to the bundle's ``in_channels`` (gray repeated to 3, RGB
averaged to 1), so one bundle serves gray and pathology sites.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.utils import convert_to_numpy, ensure_tuple

from omnifm_monai.data.degradation import degrade_bicubic
from omnifm_monai.data.dicom_series import DicomSeriesReader
from omnifm_monai.data.image_io import (
    find_input_files,
    fix_channels,
    from_uint8,
    image_reader_kind,
    resize_images,
    shared_image_reader,
    square_crop,
)
from omnifm_monai.data.phantom import MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import (
    SPLITS,
    archive_text,
    is_phantom,
    load_site_archive,
    save_site_archive,
    split_cuts,
)

__all__ = [
    "SuperResolutionData",
    "load_super_resolution_npz",
    "load_super_resolution_split",
    "super_resolution_inference_datalist",
]

logger = logging.getLogger(__name__)

_NPZ_KIND = "super_resolution"


# ---- site archives --------------------------------------------------------------------------------------


@dataclass
class SuperResolutionData:
    """HR images of one data set or site, per split (LR images are derived on load).

    Args:
        name: data set or site name, e.g. ``"site-3"``.
        modality: imaging modality, e.g. ``"CT"``; several joined by ``"+"``.
        splits: ``"train"``/``"val"``/``"test"`` -> uint8 (or, for 16-bit sources, uint16) HR images
            ``(N, S, S)`` (gray) or ``(N, S, S, 3)`` (RGB), one dtype for every split.
        source: where the images came from (``"phantom"``, a folder), for summaries only.

    Raises:
        ValueError: for an unknown split or a bad image array.
    """

    name: str
    modality: str
    splits: dict[str, np.ndarray] = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"{self.name}: unknown split(s) {sorted(unknown)}; expected keys from {SPLITS}.")
        for split, images in self.splits.items():
            bad_shape = images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3)
            if images.dtype not in (np.uint8, np.uint16) or bad_shape:
                raise ValueError(
                    f"{self.name}: {split} images are {images.dtype} {images.shape}; expected uint8 or uint16 "
                    "(N, S, S) or (N, S, S, 3)."
                )
        if len({images.dtype for images in self.splits.values()}) > 1:
            raise ValueError(f"{self.name}: splits mix uint8 and uint16 images; expected one dtype.")

    @property
    def num_channels(self) -> int:
        """1 for gray images, 3 for RGB."""
        return 3 if next(iter(self.splits.values())).ndim == 4 else 1

    def num_samples(self, split: str) -> int:
        """Images in ``split`` (0 when absent)."""
        return int(self.splits[split].shape[0]) if split in self.splits else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz`` (keys ``{split}_images``, ``name``, ``modality``, ``source``, ``kind``)."""
        # uint8 or uint16 (N, S, S) or (N, S, S, 3) per split, as stored
        arrays = {f"{s}_images": np.ascontiguousarray(x) for s, x in self.splits.items()}
        texts = {"name": self.name, "modality": self.modality, "source": self.source, "kind": _NPZ_KIND}
        save_site_archive(path, arrays, texts)


def load_super_resolution_npz(path: str | os.PathLike) -> SuperResolutionData:
    """Read a :meth:`SuperResolutionData.save_npz` archive (a MedMNIST ``.npz`` works too: its images are HR).

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when it is not a readable ``.npz`` or holds no ``{split}_images`` (the message names it).
    """
    path = Path(path).expanduser()
    arrays = load_site_archive(path)
    splits = {s: arrays[f"{s}_images"] for s in SPLITS if f"{s}_images" in arrays}
    if not splits:
        raise ValueError(f"'{path}' holds none of the keys {[f'{s}_images' for s in SPLITS]}.")
    splits = {
        s: (x if x.dtype in (np.uint8, np.uint16) else np.clip(x, 0, 255).astype(np.uint8)) for s, x in splits.items()
    }
    return SuperResolutionData(
        name=archive_text(arrays, "name", path.stem),
        modality=archive_text(arrays, "modality", ""),
        splits=splits,
        source=archive_text(arrays, "source", path.name),
    )


# ---- datalists ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _phantom_hr(image_size: int, in_channels: int, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """HR phantom images of every modality, shuffled and split 60/20/20: split -> float32 (N, C, S, S)."""
    if num_samples < 5:
        raise ValueError(f"num_samples={num_samples} must be >= 5 so that train, val and test are non-empty.")
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    images = []
    for m, (modality, n) in enumerate(zip(MODALITIES, counts)):
        if n:
            ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=2, seed=seed * 97 + m)
            images.append(fix_channels(np.asarray(ds.images, dtype=np.float32), in_channels))
    order = np.random.default_rng([seed, 0x5E]).permutation(num_samples)
    parts = np.split(np.concatenate(images)[order], split_cuts(num_samples))
    return dict(zip(SPLITS, parts))


def _read_hr(path: Path, image_size: int, in_channels: int) -> np.ndarray | None:
    """One file as float32 HR (in_channels, S, S), or None after a warning naming it and the reason."""
    kind = image_reader_kind(path)
    if kind is None:
        logger.warning("Skipping '%s': not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.", path)
        return None
    try:
        image = shared_image_reader()(path, kind)  # (C, H, W) in [0, 1]
    except Exception as e:  # one bad file must not stop the data set
        logger.warning("Skipping unreadable image '%s' (%s reader): %s: %s", path, kind, type(e).__name__, e)
        return None
    return fix_channels(resize_images(square_crop(image)[None], image_size), in_channels)[0]


def _folder_hr(folder: Path, split: str, image_size: int, in_channels: int, seed: int) -> np.ndarray:
    """HR images (N, C, S, S) of one split of a folder (``<dir>/<split>/...`` or flat, seeded split)."""
    if any((folder / s).is_dir() for s in SPLITS):
        files = find_input_files(folder / split) if (folder / split).is_dir() else []
        where = folder / split
    else:
        every = find_input_files(folder)
        order = np.random.default_rng([seed, 0xF1]).permutation(len(every))
        files = [every[i] for i in sorted(np.split(order, split_cuts(len(every)))[SPLITS.index(split)])]
        where = folder
    images = [x for x in (_read_hr(p, image_size, in_channels) for p in files) if x is not None]
    if not images:
        raise ValueError(
            f"'{where}' holds no readable image for split {split!r} ({len(files)} file(s) tried); expected "
            "PNG/JPEG/TIFF/BMP, NIfTI or DICOM files in <dir>/<split>/ or directly below <dir>."
        )
    return np.stack(images)


def load_super_resolution_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    scale: int = 2,
    num_samples: int = 420,
    seed: int = 0,
) -> list[dict]:
    """The datalist of one split for the super-resolution bundle.

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, a site ``.npz`` (:meth:`SuperResolutionData.save_npz`)
            or a folder of image files (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: HR size (square), divisible by ``scale``.
        in_channels: 1 or 3.
        scale: downsampling factor of the LR input.
        num_samples: phantom only: images over all three splits (60/20/20).
        seed: phantom images and split, flat-folder split and the degradation noise.

    Returns:
        ``[{"image": float32 LR (C, S/scale, S/scale), "label": float32 HR (C, S, S)}]``, both in [0, 1].

    Raises:
        ValueError: for a bad argument or a source without readable images (the message names it).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; expected 1 (gray) or 3 (RGB).")
    if scale < 1 or image_size < scale or image_size % scale:
        raise ValueError(f"image_size={image_size} must be a positive multiple of scale={scale}.")
    if is_phantom(dataset_dir):
        hr = _phantom_hr(image_size, in_channels, num_samples, seed)[split]
    else:
        path = Path(dataset_dir).expanduser()
        if path.is_dir():
            hr = _folder_hr(path, split, image_size, in_channels, seed)
        elif path.is_file() and path.name.lower().endswith(".npz"):
            data = load_super_resolution_npz(path)
            if split not in data.splits or not data.num_samples(split):
                raise ValueError(f"'{path}' has no {split!r} images.")
            hr = fix_channels(resize_images(from_uint8(data.splits[split]), image_size), in_channels)
        elif path.is_file():
            raise ValueError(f"dataset_dir '{path}' is a file but not a .npz archive.")
        else:
            raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
    hr = np.ascontiguousarray(hr, dtype=np.float32)  # (N, C, S, S)
    lr = degrade_bicubic(hr, scale, seed=[seed, SPLITS.index(split)])  # (N, C, S/scale, S/scale)
    return [{"image": x, "label": y} for x, y in zip(lr, hr)]


# ---- inference I/O --------------------------------------------------------------------------------------


def _read_volume(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """A NIfTI file, DICOM file or DICOM series folder: float32 (X, Y[, Z][, 1]), its affine, MONOCHROME1."""
    if kind == "nibabel":
        import nibabel as nib

        nii = nib.load(str(path))
        return np.asarray(nii.get_fdata(dtype=np.float32)), nii.affine.astype(np.float64), False
    import pydicom
    from monai.transforms import LoadImage

    reader = DicomSeriesReader()  # a file as PydicomReader reads it; a folder with its stray files skipped
    volume = LoadImage(reader=reader, image_only=True)(str(path))  # (X, Y[, Z]) stored values, rescaled
    first = ensure_tuple(reader.filenames[0])[0]
    header = pydicom.dcmread(first, stop_before_pixels=True, force=True)
    if int(getattr(header, "SamplesPerPixel", 1)) != 1:
        raise ValueError("RGB DICOM is not supported for super-resolution inference; expected gray images")
    inverted = str(getattr(header, "PhotometricInterpretation", "")) == "MONOCHROME1"
    return convert_to_numpy(volume, dtype=np.float32), convert_to_numpy(volume.affine, dtype=np.float64), inverted


def _read_for_inference(path: Path, in_channels: int) -> list[dict]:
    """One input -> one item per 2D image (a NIfTI volume or DICOM series gives one per slice along its last axis)."""
    kind = image_reader_kind(path)
    if kind in ("nibabel", "pydicom", "dicom_series"):
        data, affine, inverted = _read_volume(path, kind)
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3 or not np.isfinite(data).all():
            raise ValueError(f"expected a finite 2D image or 3D volume, got shape {data.shape}")
        low, high = float(data.min()), float(data.max())
        norm = (data - low) / (high - low) if high > low else np.zeros_like(data)
        if inverted:  # MONOCHROME1 (minimum shown white): bright = high for the network; range reversed for output
            norm, low, high = 1.0 - norm, high, low
        meta = {
            "filename": str(path),
            "kind": "nifti" if kind == "nibabel" else "dicom",
            "affine": affine,
            "range": np.array([low, high]),
        }
        slices = [norm[None, ..., k] for k in range(norm.shape[-1])]  # (1, X, Y) each
        return [
            {"image": fix_channels(s[None], in_channels)[0], "slice": k, "num_slices": len(slices), **meta}
            for k, s in enumerate(slices)
        ]
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgb = im.mode not in ("1", "L", "I", "I;16", "F", "LA")
        arr = np.asarray(im.convert("RGB" if rgb else "F"), dtype=np.float32)
    peak = 255.0 if rgb or arr.max() <= 255 else 65535.0
    image = (arr / peak).transpose(2, 0, 1) if rgb else (arr / peak)[None]  # (C, H, W) in [0, 1]
    meta = {"filename": str(path), "kind": "png", "channels": 3 if rgb else 1, "slice": 0, "num_slices": 1}
    return [{"image": fix_channels(np.clip(image, 0, 1)[None], in_channels)[0].astype(np.float32), **meta}]


def super_resolution_inference_datalist(
    input_path: str | os.PathLike, *, in_channels: int = 3
) -> tuple[list[dict], list[dict]]:
    """The LR images to super-resolve, at their own size (run them with batch size 1).

    Args:
        input_path: a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file, a DICOM series folder, or a folder searched
            recursively for them (each DICOM series folder below it is one input).
        in_channels: the network's channels.

    Returns:
        ``(items, skipped)``: items ``{"image": float32 (C, H, W) in [0, 1], "filename", "kind", "slice",
        "num_slices", ...}`` (NIfTI and DICOM: one per slice along the last voxel axis, with ``affine`` and
        the intensity ``range``; ``kind`` is ``"png"``, ``"nifti"`` or ``"dicom"``);
        skipped ``{"filename", "reason"}`` (each also logged as a warning).

    Raises:
        ValueError: when no file could be read.
    """
    items, skipped = [], []
    files = find_input_files(input_path)
    for file in files:
        try:
            if image_reader_kind(file) is None:
                raise ValueError("not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file or a DICOM series folder")
            items += _read_for_inference(file, in_channels)
        except Exception as e:  # any failure of one file must not stop the others
            logger.warning("Skipping '%s': %s: %s", file, type(e).__name__, e)
            skipped.append({"filename": str(file), "reason": f"{type(e).__name__}: {e}"})
    if not items:
        raise ValueError(
            f"no readable image in '{input_path}': {len(files)} file(s) found, {len(skipped)} skipped "
            "(expected PNG/JPEG/TIFF/BMP, NIfTI or DICOM files or DICOM series folders)."
        )
    return items, skipped
