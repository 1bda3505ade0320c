"""DICOM series folders: one folder of slices read as one volume; stray files are named and skipped.

The one series reader of the project: the classification, super-resolution, VQA and segmentation loaders and
their inference datalists read a series folder through it (via :mod:`omnifm_monai.data.image_io` or as a
MONAI reader).

A folder is a *series folder* when two or more of its DICOM files are slices of one series: the same
``SeriesInstanceUID`` (0020,000E), each with an ``ImagePositionPatient`` (0020,0032) (single radiographs,
which have none, stay separate images). Its series is the ``SeriesInstanceUID`` with the most files; every
other file of the folder is a *stray* and is named in a warning and skipped, never fatal to the series:

- a file that is not DICOM (a ``README.txt``, a ``DICOMDIR`` without pixels, a PNG ...);
- a DICOM file of another series;
- a slice whose ``Rows`` x ``Columns`` differ from the series' (the majority size);
- a slice without ``InstanceNumber`` (0020,0013), or with one already taken (its place is unknown);
- a corrupt slice (truncated header or pixel data that cannot be decoded).

:class:`DicomSeriesReader` is MONAI's ``PydicomReader`` with that check in front: the slices left are
stacked by MONAI as usual (sorted by ``InstanceNumber``, the modality rescale applied, the affine built
from the headers). Files and anything that is not a single folder go to ``PydicomReader`` unchanged.

Why not MONAI's readers as they are (tried on a 5-slice series with one stray of each kind): on a folder
``PydicomReader`` stacks every DICOM file, so a file of another series fails the stack ("all input arrays
must have the same shape"; at the same size it would be stacked silently) and one truncated slice fails
the whole series; ``ITKReader`` (GDCM) reads the series but drops such files without naming them, and
zero-fills truncated data elsewhere (see :mod:`omnifm_monai.data.image_io`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monai.data import PydicomReader
from monai.utils import ensure_tuple

__all__ = ["DICOM_EXTENSIONS", "SeriesFiles", "series_folder_files", "is_series_folder", "DicomSeriesReader"]

logger = logging.getLogger(__name__)

DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
"""DICOM files read with pydicom (files without an extension are tried as DICOM too)."""


@dataclass(frozen=True)
class SeriesFiles:
    """The files of a folder's series.

    Args:
        folder: the series folder.
        uid: the series' ``SeriesInstanceUID`` (``""`` when its file has none).
        files: the series' slices, sorted by ``InstanceNumber`` (one file for a single image).
        skipped: ``(file, reason)`` for every other file of the folder.
        positioned: every slice has an ``ImagePositionPatient``.
    """

    folder: Path
    uid: str
    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]
    positioned: bool


def _folder_files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:  # DirEntry.is_file() needs no stat on most file systems
        return sorted(Path(e.path) for e in entries if e.is_file() and not e.name.startswith("."))


_NOT_DICOM_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".nii",
    ".gz",
    ".npz",
    ".json",
    ".csv",
    ".txt",
)
"""Extensions never tried as DICOM: a folder of 20,000 PNG files is not opened file by file."""


def _may_be_dicom(path: Path) -> bool:
    """``.dcm``/``.dicom``, no extension, or the ``DICM`` preamble (as :func:`image_io.image_reader_kind`)."""
    import pydicom

    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS or not suffix:
        return True
    return suffix not in _NOT_DICOM_EXTENSIONS and pydicom.misc.is_dicom(path)


def _header(path: Path):
    """``(dataset without pixels, None)`` or ``(None, reason)`` for one file of a series folder."""
    import pydicom

    if not _may_be_dicom(path):
        return None, f"not a DICOM file (extension '{path.suffix}' and no 'DICM' preamble)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as e:  # truncated headers raise EOFError, struct.error, OSError, ...
        return None, f"not a readable DICOM file ({type(e).__name__}: {e})"
    if ds.get("Rows") is None or ds.get("Columns") is None:
        return None, "not a DICOM image: no Rows/Columns (e.g. a DICOMDIR, a report or not DICOM at all)"
    return ds, None


def series_folder_files(folder: str | os.PathLike) -> SeriesFiles:
    """The series of a folder of DICOM files and the strays, from the headers only (no pixel data read).

    Args:
        folder: a folder of DICOM files (hidden files are ignored).

    Returns:
        The series with the most files and every other file with the reason it is skipped.

    Raises:
        ValueError: when no file of the folder is a DICOM image (the message names the folder and a reason).
    """
    folder = Path(folder)
    skipped: list[tuple[Path, str]] = []
    groups: dict[str, list[tuple[Path, object]]] = {}
    for path in _folder_files(folder):
        ds, reason = _header(path)
        if ds is None:
            skipped.append((path, reason))
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((path, ds))
    if not groups:
        first = f"; {skipped[0][0].name}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"'{folder}': no DICOM image in the folder ({len(skipped)} file(s) skipped{first}).")
    uid = min(groups, key=lambda u: (-len(groups[u]), groups[u][0][0].name))  # the most files, then the first file
    for other, members in groups.items():
        if other != uid:
            for path, _ in members:
                skipped.append(
                    (
                        path,
                        f"a file of another series (SeriesInstanceUID {other or '(none)'}); "
                        f"the folder's series is {uid or '(none)'} with {len(groups[uid])} file(s)",
                    )
                )
    series = groups[uid]
    size = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in series).most_common(1)[0][0]
    kept: list[tuple[int, Path, object]] = []
    taken: dict[int, Path] = {}
    for path, ds in series:
        if (int(ds.Rows), int(ds.Columns)) != size:
            skipped.append((path, f"{ds.Rows} x {ds.Columns} pixels, the series' slices are {size[0]} x {size[1]}"))
        elif len(series) > 1 and ds.get("InstanceNumber") in (None, ""):
            skipped.append((path, "no InstanceNumber (0020,0013): its place in the series is unknown"))
        elif len(series) > 1 and int(ds.InstanceNumber) in taken:
            number = int(ds.InstanceNumber)
            skipped.append((path, f"InstanceNumber {number} is also '{taken[number].name}'s"))
        else:
            number = int(ds.get("InstanceNumber") or 0)
            taken[number] = path
            kept.append((number, path, ds))
    kept.sort(key=lambda k: (k[0], k[1]))
    positioned = all(ds.get("ImagePositionPatient") is not None for _, _, ds in kept)
    skipped.sort()
    return SeriesFiles(folder, uid, tuple(p for _, p, _ in kept), tuple(skipped), positioned)


def is_series_folder(folder: str | os.PathLike) -> bool:
    """``True`` when two or more DICOM files of ``folder`` are positioned slices of one series (headers only)."""
    folder = Path(folder)
    if not folder.is_dir() or sum(_may_be_dicom(p) for p in _folder_files(folder)) < 2:
        return False
    try:
        series = series_folder_files(folder)
    except ValueError:
        return False
    return len(series.files) >= 2 and series.positioned


class DicomSeriesReader(PydicomReader):
    """MONAI's ``PydicomReader`` for a series folder with its stray files named in a warning and skipped.

    Takes ``PydicomReader``'s arguments. Reading a single folder checks its files
    (:func:`series_folder_files`), reads the series' slices in full and skips a slice whose pixel data cannot
    be decoded; ``skipped`` then lists ``(file, reason)`` for every file left out, each also logged as a
    warning. Any other input (a file, several paths) is read by ``PydicomReader`` as it is.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: list[tuple[Path, str]] = []

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs):
        """Read a file, or a folder as one series (see the class docstring); pydicom datasets out."""
        import pydicom

        names = ensure_tuple(data)
        if len(names) != 1 or not Path(f"{names[0]}").is_dir():
            self.skipped = []
            return super().read(data, **kwargs)
        series = series_folder_files(f"{names[0]}")
        skipped = list(series.skipped)
        datasets, files = [], []
        for path in series.files:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(path, force=True, **{**self.kwargs, **kwargs})
                    _ = ds.pixel_array  # decoded here (pydicom keeps it): a corrupt slice is found before stacking
            except Exception as e:  # truncated pixel data raises ValueError, a missing codec RuntimeError, ...
                skipped.append((path, f"pixel data cannot be read ({type(e).__name__}: {e})"))
                continue
            datasets.append(ds)
            files.append(str(path))
        self.skipped = sorted(skipped)
        for path, reason in self.skipped:
            logger.warning("Skipping '%s' of the DICOM series folder '%s': %s", path, series.folder, reason)
        if not datasets:
            raise ValueError(f"'{series.folder}': no readable slice ({len(skipped)} file(s) skipped).")
        # the attributes PydicomReader.read sets and PydicomReader.get_data stacks the series by
        self.has_series = len(datasets) > 1
        self.filenames = [files] if self.has_series else files
        return datasets if self.has_series else datasets[0]
