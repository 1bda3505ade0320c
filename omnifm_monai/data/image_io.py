"""Image I/O shared by every task: file readers, channel and size helpers and the uint8 site layout.

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
- A DICOM series folder (two or more positioned slices of one series, see
  :mod:`omnifm_monai.data.dicom_series`) with its ``DicomSeriesReader(swap_ij=False)``: the volume's middle
  slice, as for a NIfTI volume; its stray files are named in a warning and skipped.
  :func:`find_input_files` lists such a folder as one input.

Volumes for segmentation (a NIfTI file, a DICOM series folder) are read by :func:`read_volume`, with the
one reader named and no fallback: a file it rejects gives one line naming the file and the reader's reason.

Every image is then scaled to [0, 1] per image (``ScaleIntensity``), made channel-first, given
``in_channels`` channels (:func:`fix_channels`) and resized (:func:`resize_images`: ``area`` when
shrinking, ``bilinear``/``trilinear`` when enlarging; non-square images are stretched).

Sites store images as uint8 (:func:`to_uint8`): gray ``(N, S, S)`` and RGB ``(N, S, S, 3)`` like MedMNIST,
or channels first ``(N, C, *S)`` where a task keeps volumes or pairs; :func:`from_uint8` reads the
MedMNIST layout back as float ``(N, C, S, S)`` in [0, 1] (uint16 too: super-resolution keeps 16-bit sources).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import LoadImage, Resize, ScaleIntensity
from monai.utils import convert_to_numpy, ensure_tuple

from omnifm_monai.data.dicom_series import DICOM_EXTENSIONS, DicomSeriesReader, is_series_folder

__all__ = [
    "IMAGE_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "check_image_args",
    "image_reader_kind",
    "shared_image_reader",
    "load_image_file",
    "read_volume",
    "find_input_files",
    "fix_channels",
    "resize_images",
    "resize_masks",
    "square_crop",
    "to_uint8",
    "from_uint8",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""2D image files read with PIL."""

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz")
"""NIfTI files read with nibabel."""


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "pil"),
    (b"\xff\xd8\xff", "pil"),
    (b"II*\x00", "pil"),
    (b"MM\x00*", "pil"),
    (b"BM", "pil"),
)


def image_reader_kind(path: Path) -> str | None:
    """``"pil"``, ``"nibabel"``, ``"pydicom"``, ``"dicom_series"`` (a series folder) or ``None`` (not an image
    file or series folder we read)."""
    if path.is_dir():
        return "dicom_series" if is_series_folder(path) else None
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
            "dicom_series": DicomSeriesReader(swap_ij=False),
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
        if kind == "dicom_series":
            import pydicom

            first = ensure_tuple(self.readers[kind].filenames[0])[0]  # (rows, cols, slices) read from these files
            header = pydicom.dcmread(first, stop_before_pixels=True, force=True)
            if int(getattr(header, "SamplesPerPixel", 1)) != 1:
                raise ValueError("RGB DICOM series are not supported; expected gray slices")
            inverted = str(getattr(header, "PhotometricInterpretation", "")) == "MONOCHROME1"
        if inverted:
            image = -image  # MONOCHROME1 -> MONOCHROME2 (bright = high) before scaling to [0, 1]
        if kind == "pil":
            image = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)  # (H, W[, C]) -> (C, H, W)
        elif kind == "dicom_rgb":
            image = np.moveaxis(image, -1, 0)  # ([F,] H, W, 3) -> (3, [F,] H, W)
        else:
            image = image[None]  # (H, W[, D]) -> (1, H, W[, D])
        if image.ndim == 4:  # a volume: keep the middle slice
            if kind in ("nibabel", "dicom_series"):
                image = image[..., image.shape[-1] // 2]  # (C, X, Y, Z) -> (C, X, Y)
            else:
                image = image[:, image.shape[1] // 2]  # DICOM frames: (C, F, H, W) -> (C, H, W)
        if image.ndim != 3 or min(image.shape[1:]) < 1:
            raise ValueError(f"expected a 2D image or a 3D volume, got an array of shape {image.shape}")
        if not np.isfinite(image).all():
            raise ValueError("the image contains NaN or infinite values")
        return convert_to_numpy(self.scale(image), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def shared_image_reader() -> _ImageFileReader:
    """The process-wide image file reader (PIL, NIfTI and DICOM readers built once)."""
    return _ImageFileReader()


def load_image_file(path: str | os.PathLike, *, image_size: int = 64, in_channels: int = 3) -> np.ndarray:
    """One image file, read and preprocessed exactly like an image of a folder data set (for inference).

    The reader is picked as for folders (extension, then magic bytes; see the module docstring): PNG/JPEG/
    TIFF/BMP, NIfTI (a volume gives its middle slice), DICOM or a DICOM series folder (its middle slice);
    the image is scaled to [0, 1], given ``in_channels`` channels and resized to ``image_size`` x
    ``image_size``.

    Args:
        path: the image file or DICOM series folder.
        image_size: output spatial size (square).
        in_channels: 1 or 3 channels out.

    Returns:
        float32 ``(in_channels, image_size, image_size)`` in [0, 1].

    Raises:
        FileNotFoundError: when ``path`` is not an existing file or folder.
        ValueError: for a bad argument, a file that is not an image file we read, a folder that is not a
            DICOM series, or a file its reader rejects (the message names the file, the reader and the
            reader's error).
    """
    check_image_args(image_size, in_channels)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"'{path}' is not an existing file.")
    kind = image_reader_kind(path)
    if kind is None and path.is_dir():
        raise ValueError(f"'{path}' is a folder but not a DICOM series (two or more positioned slices of one series).")
    if kind is None:
        raise ValueError(f"'{path}' is not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.")
    try:
        image = shared_image_reader()(path, kind)  # (C, H, W) in [0, 1]
    except Exception as e:  # readers raise many types; callers get one, with the reason kept
        raise ValueError(f"cannot read '{path}' with the {kind} reader: {type(e).__name__}: {e}") from e
    return fix_channels(resize_images(image[None], image_size), in_channels)[0]


_VOLUME_READERS = {
    "NibabelReader": NibabelReader,
    "PydicomReader": PydicomReader,
    "DicomSeriesReader": DicomSeriesReader,
}


def read_volume(path: str | os.PathLike, reader: str):
    """One NIfTI file or DICOM series folder read by exactly one reader (no fallback to MONAI's others).

    ``LoadImage(reader="NibabelReader")`` registers the named reader *in front of* all of MONAI's readers and
    tries every one in turn when it fails (seven tracebacks for an empty file); a reader passed at call time
    is the only one tried.

    Args:
        path: a NIfTI file (``reader="NibabelReader"``) or a DICOM series folder or file (``"DicomSeriesReader"``,
            which names and skips stray files, or MONAI's plain ``"PydicomReader"``).
        reader: ``"NibabelReader"``, ``"DicomSeriesReader"`` or ``"PydicomReader"``.

    Returns:
        the ``MetaTensor`` ``LoadImage(image_only=True)`` gives (spatial axes as stored, affine in its meta).

    Raises:
        ValueError: naming the file, the reader and the reader's own reason (not MONAI's wrapper).
    """
    from omnifm_monai.errors import SiteDataError, one_line_reason

    if reader not in _VOLUME_READERS:
        raise ValueError(f"reader={reader!r} is not supported; expected one of {sorted(_VOLUME_READERS)}.")
    try:
        return LoadImage(image_only=True)(str(path), reader=_VOLUME_READERS[reader]())
    except Exception as e:  # readers raise many types; callers get one line naming the file
        raise SiteDataError(f"'{path}' cannot be read by {reader}: {one_line_reason(e)}") from e


def check_image_args(image_size: int, in_channels: int) -> None:
    """Check a 2D loader's ``image_size`` (>= 1) and ``in_channels`` (1 or 3).

    Raises:
        ValueError: naming the argument and its value.
    """
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be >= 1.")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; expected 1 (gray) or 3 (RGB).")


def fix_channels(images: np.ndarray, in_channels: int, source: str | None = None) -> np.ndarray:
    """``(N, C, *S)`` -> ``(N, in_channels, *S)``: gray repeated, RGB averaged to gray.

    Args:
        images: float images, channels first.
        in_channels: channels out.
        source: ``None`` for 2D image files, whose alpha channel is dropped first (RGBA -> RGB, gray +
            alpha -> gray); else the name of the volume's source, which the error names (volumes keep all
            their channels: 2 or 4 are sequences, not alpha).

    Raises:
        ValueError: when the channels cannot be converted.
    """
    c = images.shape[1]
    if source is None:
        if c == 4:
            images, c = images[:, :3], 3  # RGBA -> RGB
        elif c == 2:
            images, c = images[:, :1], 1  # gray + alpha -> gray
    if c == in_channels:
        return images
    if c == 1:
        return np.repeat(images, in_channels, axis=1)  # gray -> (N, in_channels, *S)
    if c == 3 and in_channels == 1:
        return images.mean(axis=1, keepdims=True)  # RGB -> (N, 1, *S)
    if source is not None:
        raise ValueError(
            f"{source}: images have {c} channels, cannot give them in_channels={in_channels}; set it to {c}."
        )
    raise ValueError(f"images with {c} channels cannot be given {in_channels}; expected 1, 2, 3 or 4 channels.")


def resize_images(images: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Resize float ``(N, C, *S)`` images to ``size`` on every spatial axis in one ``Resize`` call.

    ``area`` when any axis shrinks, else ``bilinear`` (2D) / ``trilinear`` (3D); the result is clipped to
    [0, 1]. ``size`` is an int (the same on every axis) or one size per spatial axis.
    """
    n, c, *spatial = images.shape
    size = (int(size),) * len(spatial) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if tuple(spatial) == size:
        return images
    shrink = any(s > t for s, t in zip(spatial, size))
    mode = "area" if shrink else ("bilinear" if len(size) == 2 else "trilinear")
    stacked = torch.as_tensor(images.reshape(n * c, *spatial))  # every (image, channel) as one channel
    out = convert_to_numpy(Resize(size, mode=mode, dtype=torch.float32)(stacked), dtype=np.float32)
    return np.clip(out.reshape(n, c, *size), 0.0, 1.0)


def resize_masks(masks: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize int label maps ``(N, *S)`` to ``size`` (nearest neighbour); int64 out (unchanged at that size)."""
    size = tuple(int(s) for s in size)
    if tuple(masks.shape[1:]) == size:
        return masks
    labels = Resize(size, mode="nearest", dtype=torch.float32)(torch.as_tensor(masks, dtype=torch.float32))
    return convert_to_numpy(labels).round().astype(np.int64)


def square_crop(image: np.ndarray) -> np.ndarray:
    """Centre crop of ``(..., H, W)`` to ``(..., m, m)``, ``m = min(H, W)``."""
    h, w = image.shape[-2:]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return image[..., top : top + m, left : left + m]


def to_uint8(images: np.ndarray, *, channels_last: bool = True) -> np.ndarray:
    """Float ``(N, C, *S)`` in [0, 1] -> uint8 (rounded half to even, clipped).

    Args:
        images: float images, channels first.
        channels_last: ``True`` for the MedMNIST layout of 2D images: ``(N, H, W)`` when ``C = 1``, else
            ``(N, H, W, C)``; ``False`` keeps ``(N, C, *S)``.
    """
    quantised = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not channels_last:
        return quantised  # (N, C, *S)
    if quantised.shape[1] == 1:
        return quantised[:, 0]  # (N, 1, H, W) -> (N, H, W)
    return np.ascontiguousarray(quantised.transpose(0, 2, 3, 1))  # NCHW -> NHWC


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 (divided by 255) or uint16 (divided by 65535) ``(N, H, W)`` or ``(N, H, W, C)`` -> float32
    ``(N, C, H, W)`` in [0, 1]."""
    x = images.astype(np.float32) / (65535.0 if images.dtype == np.uint16 else 255.0)
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # -> (N, C, H, W)


def find_input_files(input_path: str | os.PathLike) -> list[Path]:
    """``[input_path]`` for a file or a DICOM series folder; for another folder, every file below it, sorted,
    with each DICOM series folder below it in place of its files (hidden files/folders skipped).

    Raises:
        ValueError: when ``input_path`` is empty.
        FileNotFoundError: when it does not exist.
    """
    if not os.fspath(input_path).strip():
        raise ValueError("no input given: set input_dir (--input_dir) to an image file or a folder of images.")
    path = Path(input_path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input_dir '{path}' does not exist.")
    inputs = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if is_series_folder(folder):
            inputs.append(Path(folder))  # one series: its files (strays too) are read as one volume
        else:
            inputs += [Path(folder) / n for n in names if not n.startswith(".")]  # os.walk: files only
    return sorted(inputs)
