"""Datalists for the classification bundle: ``[{"image": (C, S, S) float32 in [0, 1], "label": int64}, ...]``.

:func:`load_classification_split` turns one of three sources into the list a MONAI ``Dataset`` takes:

- ``None``, ``""`` or ``"phantom"``: a centralised phantom (all modalities, all findings).
- a ``.npz`` file in the MedMNIST-v2 layout (an official file or one site's export of a federation).
- a folder of image files laid out ``<dir>/<split>/<class_name>/...`` (files may sit in sub-folders of a
  class folder), the way a hospital exports images: PNG/JPEG/TIFF/BMP, NIfTI and single DICOM files.

Reading image files (the reader is picked by extension, then by magic bytes; there is no fallback to
another reader, so a file the chosen reader rejects is skipped rather than silently mis-read):

- PNG/JPEG/TIFF/BMP with ``PILReader(reverse_indexing=False)`` so that arrays are ``(H, W)`` like the
  ``.npz`` images; palette, CMYK and alpha images are converted to RGB/L first.
- NIfTI (``.nii``/``.nii.gz``) with ``NibabelReader`` (not ITK: ITK zero-fills a truncated ``.nii.gz``
  without an error). A 3D volume gives its middle slice along the last voxel axis (the axial slice for
  the usual RAS/LPS storage), as stored, without reorientation.
- DICOM (``.dcm``/``.dicom``, no extension, or any file with the ``DICM`` preamble) with
  ``PydicomReader(swap_ij=False)`` so that arrays are ``(rows, cols)``; the modality rescale
  (slope/intercept) is applied; ``MONOCHROME1`` images (minimum shown white, common for radiographs)
  are inverted so that bright is high as in ``MONOCHROME2``; RGB files keep their 3 channels; a
  multi-frame file gives its middle frame.

Every image is then scaled to [0, 1] per image (``ScaleIntensity``), made channel-first, given
``in_channels`` channels (gray repeated, RGB averaged to gray, alpha dropped) and resized to
``image_size`` x ``image_size`` with ``Resize`` (``area`` when shrinking, ``bilinear`` when enlarging;
non-square images are stretched). A file that cannot be read is logged with
``logging.getLogger(__name__).warning`` (path and reason) and skipped.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np
import torch
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import LoadImage, Resize, ScaleIntensity
from monai.utils import convert_to_numpy

from omnifm_monai.data.medmnist import SPLITS, load_medmnist
from omnifm_monai.data.phantom import FINDINGS, MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import is_phantom

__all__ = [
    "IMAGE_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "load_classification_split",
    "class_names_for",
    "load_image_file",
    "image_reader_kind",
    "fix_channels",
    "resize_images",
    "shared_image_reader",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""2D image files read with PIL."""

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz")
"""NIfTI files read with nibabel."""

DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
"""DICOM files read with pydicom (files without an extension are tried as DICOM too)."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "pil"),
    (b"\xff\xd8\xff", "pil"),
    (b"II*\x00", "pil"),
    (b"MM\x00*", "pil"),
    (b"BM", "pil"),
)


def _check_args(split: str, image_size: int, in_channels: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be >= 1.")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; expected 1 (gray) or 3 (RGB).")


def fix_channels(images: np.ndarray, in_channels: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, in_channels, H, W)``: alpha dropped, gray repeated or RGB averaged."""
    c = images.shape[1]
    if c == 4:
        images, c = images[:, :3], 3  # RGBA -> RGB
    elif c == 2:
        images, c = images[:, :1], 1  # gray + alpha -> gray
    if c == in_channels:
        return images
    if c == 1:
        return np.repeat(images, in_channels, axis=1)  # gray -> (N, 3, H, W)
    if c == 3 and in_channels == 1:
        return images.mean(axis=1, keepdims=True)  # RGB -> (N, 1, H, W)
    raise ValueError(f"images with {c} channels cannot be given {in_channels}; expected 1, 2, 3 or 4 channels.")


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """Resize ``(N, C, H, W)`` float images to ``(N, C, image_size, image_size)`` in one ``Resize`` call."""
    n, c, h, w = images.shape
    if (h, w) == (image_size, image_size):
        return images
    mode = "area" if h > image_size or w > image_size else "bilinear"
    stacked = torch.as_tensor(images.reshape(n * c, h, w))  # every (image, channel) as one channel
    resized = Resize((image_size, image_size), mode=mode, dtype=torch.float32)(stacked)
    out = convert_to_numpy(resized, dtype=np.float32).reshape(n, c, image_size, image_size)
    return np.clip(out, 0.0, 1.0)


def _as_datalist(images: np.ndarray, labels: np.ndarray) -> list[dict]:
    return [{"image": np.ascontiguousarray(x, dtype=np.float32), "label": np.int64(y)} for x, y in zip(images, labels)]


def _phantom_split(split: str, image_size: int, in_channels: int, num_samples: int, seed: int) -> list[dict]:
    """All phantom modalities and findings, ``num_samples`` images in total; each split has its own seeds."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1.")
    split_index = SPLITS.index(split)
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    images, labels = [], []
    for m, (modality, n) in enumerate(zip(MODALITIES, counts)):
        if n == 0:
            continue
        phantom_seed = (seed * len(SPLITS) + split_index) * len(MODALITIES) + m  # distinct per split/modality
        ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=2, seed=phantom_seed)
        images.append(fix_channels(np.asarray(ds.images, dtype=np.float32), in_channels))
        labels.append(np.asarray(ds.labels, dtype=np.int64))
    order = np.random.default_rng([seed, split_index]).permutation(num_samples)  # interleave modalities
    return _as_datalist(np.concatenate(images)[order], np.concatenate(labels)[order])


def _npz_split(path: Path, split: str, image_size: int, in_channels: int) -> list[dict]:
    data = load_medmnist(path)
    raw, labels = data.splits[split]
    images = raw.astype(np.float32) / 255.0
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)  # -> (N, C, S, S)
    images = fix_channels(resize_images(images, image_size), in_channels)
    return _as_datalist(images, labels)


def image_reader_kind(path: Path) -> str | None:
    """``"pil"``, ``"nibabel"``, ``"pydicom"`` or ``None`` (not an image file we read)."""
    name = path.name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nibabel"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "pil"
    if suffix in DICOM_EXTENSIONS:
        return "pydicom"
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return "pydicom" if not suffix else None
    if head[128:132] == b"DICM":
        return "pydicom"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "pydicom" if not suffix else None  # DICOM files often have no extension (and no preamble)


def _pil_converter(image):
    """Bring PIL modes numpy cannot read as intensities to ``L``/``RGB``."""
    if image.mode in ("1", "LA"):
        return image.convert("L")
    if image.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


class _ImageFileReader:
    """Load one 2D image (or a 3D volume's middle slice) as float32 ``(C, H, W)`` in [0, 1]."""

    def __init__(self) -> None:
        self.loader = LoadImage(image_only=True, ensure_channel_first=False)
        self.readers = {
            "pil": PILReader(converter=_pil_converter, reverse_indexing=False),
            "nibabel": NibabelReader(),
            "dicom_gray": PydicomReader(swap_ij=False),
            "dicom_rgb": PydicomReader(swap_ij=False, channel_dim=-1),
        }
        self.scale = ScaleIntensity(minv=0.0, maxv=1.0)

    def __call__(self, path: Path, kind: str) -> np.ndarray:
        inverted = False
        if kind == "pydicom":
            import pydicom

            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            rgb = int(getattr(header, "SamplesPerPixel", 1)) == 3
            kind = "dicom_rgb" if rgb else "dicom_gray"
            inverted = str(getattr(header, "PhotometricInterpretation", "")) == "MONOCHROME1"  # 0 shown white
        image = convert_to_numpy(self.loader(path, reader=self.readers[kind]), dtype=np.float32)
        if inverted:
            image = -image  # MONOCHROME1 -> MONOCHROME2 (bright = high) before scaling to [0, 1]
        if kind == "pil":
            image = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)  # (H, W[, C]) -> (C, H, W)
        elif kind == "dicom_rgb":
            image = np.moveaxis(image, -1, 0)  # ([F,] H, W, 3) -> (3, [F,] H, W)
        else:
            image = image[None]  # (H, W[, D]) -> (1, H, W[, D])
        if image.ndim == 4:  # a volume: keep the middle slice
            if kind == "nibabel":
                image = image[..., image.shape[-1] // 2]  # (C, X, Y, Z) -> (C, X, Y)
            else:
                image = image[:, image.shape[1] // 2]  # DICOM frames: (C, F, H, W) -> (C, H, W)
        if image.ndim != 3 or min(image.shape[1:]) < 1:
            raise ValueError(f"expected a 2D image or a 3D volume, got an array of shape {image.shape}")
        if not np.isfinite(image).all():
            raise ValueError("the image contains NaN or infinite values")
        return convert_to_numpy(self.scale(image), dtype=np.float32)


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


def _folder_split(folder: Path, split: str, image_size: int, in_channels: int) -> list[dict]:
    class_names = _folder_class_names(folder)
    split_dir = folder / split
    if not split_dir.is_dir():
        raise ValueError(f"'{split_dir}' does not exist; expected <dir>/{split}/<class_name>/<image files>.")
    reader = _ImageFileReader()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, class_name in enumerate(class_names):
        class_dir = split_dir / class_name
        if not class_dir.is_dir():
            continue
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        for path in files:
            kind = image_reader_kind(path)
            if kind is None:
                logger.warning("Skipping '%s': not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.", path)
                continue
            try:
                image = reader(path, kind)
            except Exception as e:  # any failure of one file must not stop the data set
                logger.warning("Skipping unreadable image '%s' (%s reader): %s: %s", path, kind, type(e).__name__, e)
                continue
            image = fix_channels(resize_images(image[None], image_size), in_channels)[0]
            images.append(image)
            labels.append(label)
    if not images:
        raise ValueError(f"'{split_dir}' holds no readable image; expected <class_name>/<image files> inside it.")
    return _as_datalist(np.stack(images), np.asarray(labels, dtype=np.int64))


def load_classification_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    num_samples: int = 600,
    seed: int = 0,
) -> list[dict]:
    """The datalist of one split for the classification bundle.

    Args:
        dataset_dir: ``None``, ``""`` or ``"phantom"`` for the centralised phantom; the path of a MedMNIST
            layout ``.npz`` file; or a folder laid out ``<dir>/<split>/<class_name>/<image files>`` (class
            names sorted give the label ids).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.
        num_samples: phantom only: images in this split, spread over all modalities.
        seed: phantom only: train/val/test draw from different seeds derived from it.

    Returns:
        ``[{"image": float32 (in_channels, image_size, image_size) in [0, 1], "label": np.int64}, ...]``;
        labels are global ids (phantom finding ids, the ``.npz`` file's stored ids, or the folder's
        sorted class index).

    Raises:
        ValueError: for a bad argument, an unreadable ``.npz``, a folder not in the expected layout or a
            split with no readable image (the message names the folder).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    _check_args(split, image_size, in_channels)
    if is_phantom(dataset_dir):
        return _phantom_split(split, image_size, in_channels, num_samples, seed)
    path = Path(dataset_dir).expanduser()
    if path.is_dir():
        return _folder_split(path, split, image_size, in_channels)
    if path.is_file():
        if path.name.lower().endswith(".npz"):
            return _npz_split(path, split, image_size, in_channels)
        raise ValueError(
            f"dataset_dir '{path}' is a file but not a .npz archive; expected None/'phantom', a MedMNIST "
            ".npz file or a folder laid out <dir>/<split>/<class_name>/<image files>."
        )
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


def class_names_for(dataset_dir: str | os.PathLike | None) -> tuple[str, ...]:
    """Class names indexed by label id, for the bundle's metadata and inference output.

    Args:
        dataset_dir: as for :func:`load_classification_split`.

    Returns:
        Phantom: the phantom's findings. ``.npz``: names for ids ``0 .. max(label_space)`` (ids outside the
        file's label space, e.g. other sites' classes in a federation export, are ``"class_{i}"``).
        Folder: the sorted class folder names over all splits.

    Raises:
        ValueError, FileNotFoundError: as for :func:`load_classification_split`.
    """
    if is_phantom(dataset_dir):
        return tuple(FINDINGS)
    path = Path(dataset_dir).expanduser()
    if path.is_dir():
        return _folder_class_names(path)
    if path.is_file() and path.name.lower().endswith(".npz"):
        data = load_medmnist(path)
        known = dict(zip(data.label_space, data.class_names))
        size = max(data.label_space) + 1 if data.label_space else 0
        return tuple(known.get(i, f"class_{i}") for i in range(size))
    if path.is_file():
        raise ValueError(f"dataset_dir '{path}' is a file but not a .npz archive.")
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


@functools.lru_cache(maxsize=1)
def shared_image_reader() -> _ImageFileReader:
    """The process-wide image file reader (PIL, NIfTI and DICOM readers built once)."""
    return _ImageFileReader()


def load_image_file(path: str | os.PathLike, *, image_size: int = 64, in_channels: int = 3) -> np.ndarray:
    """One image file, read and preprocessed exactly like an image of a folder data set (for inference).

    The reader is picked as for folders (extension, then magic bytes; see the module docstring): PNG/JPEG/
    TIFF/BMP, NIfTI (a volume gives its middle slice) or DICOM; the image is scaled to [0, 1], given
    ``in_channels`` channels and resized to ``image_size`` x ``image_size``.

    Args:
        path: the image file.
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.

    Returns:
        float32 ``(in_channels, image_size, image_size)`` in [0, 1].

    Raises:
        FileNotFoundError: when ``path`` is not an existing file.
        ValueError: for a bad argument, a file that is not an image file we read, or a file its reader
            rejects (the message names the file, the reader and the reader's error).
    """
    _check_args(SPLITS[0], image_size, in_channels)  # the split is not used: checks the other two
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' is not an existing file.")
    kind = image_reader_kind(path)
    if kind is None:
        raise ValueError(f"'{path}' is not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.")
    try:
        image = shared_image_reader()(path, kind)  # (C, H, W) in [0, 1]
    except Exception as e:  # readers raise many types; callers get one, with the reason kept
        raise ValueError(f"cannot read '{path}' with the {kind} reader: {type(e).__name__}: {e}") from e
    return fix_channels(resize_images(image[None], image_size), in_channels)[0]
