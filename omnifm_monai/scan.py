# Copyright (c) OmniFM-MONAI contributors.
# Licensed under the Apache License, Version 2.0.
"""Scan a site's data folder before training: what is there, and which files cannot be read.

Run it on a hospital site's folder before joining a federation::

    python -m omnifm_monai.scan /data/site-1 --json scan.json
    python -m omnifm_monai.scan /data/site-1 --task classification   # + what training makes of it

Every DICOM series (the files of one folder with one ``SeriesInstanceUID``, as the loaders read a series),
NIfTI file, PNG/TIFF/JPEG/BMP image, MedMNIST-layout ``.npz`` and metadata file (``dataset.json``,
``labels.json``, a datalist ``.json``/``.csv``) becomes one :class:`ScanItem`; every file that cannot be used
becomes a :class:`ScanProblem` with the reason; a 4D NIfTI is flagged as the loaders treat it. A bad file
never stops the scan. With ``--task`` the task's own loader judges the layout and every file
(:mod:`omnifm_monai.scan_layout`: splits, class counts, image/label pairs). The exit code is 0 when at least
one readable image item was found (with ``--task``: when the layout has every split and no error), 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# the same file-kind detection as the data loaders (image_io) (extension, magic bytes, extension-less
# files tried as DICOM), so the scan recognises exactly the files training reads
from omnifm_monai.data.image_io import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    NIFTI_EXTENSIONS,
    image_reader_kind,
)
from omnifm_monai.data.medmnist import load_medmnist
from omnifm_monai.scan_layout import TASK_CHOICES, LayoutReport, check_layout, pair_shape_problems

__all__ = ["ScanItem", "ScanProblem", "ScanReport", "scan_folder", "main"]

NPZ_EXTENSIONS: tuple[str, ...] = (".npz",)
"""MedMNIST-layout archives, read with :func:`omnifm_monai.data.medmnist.load_medmnist`."""

METADATA_EXTENSIONS: tuple[str, ...] = (".json", ".csv")
"""Files the loaders read as metadata, not images: ``dataset.json`` (MSD), ``labels.json``, datalists,
VQA question files. Listed as ``"metadata"`` items, never as errors."""

UNKNOWN = "?"


@dataclass
class ScanItem:
    """One readable unit of data.

    Args:
        path: path relative to the scanned folder (POSIX separators); for a DICOM series, the folder
            holding its first file followed by ``[SeriesInstanceUID]``.
        kind: ``"dicom-series"``, ``"nifti"``, ``"image"`` or ``"npz"``.
        modality: DICOM ``Modality`` (0008,0060), the ``.npz`` modality, or ``"?"``.
        num_files: number of files (slices) of a DICOM series; 1 for a single file; for ``.npz``, the number
            of images over all splits.
        shape: array shape: ``(Rows, Columns, slices)`` for DICOM (``(Rows, Columns, frames)`` for a
            multi-frame file), the NIfTI header shape, ``(H, W[, C])`` for an image or one ``.npz`` image.
        spacing: voxel spacing in mm, same axis order as ``shape``; ``None`` when unknown.
        dtype: stored data type, e.g. ``"int16"``.
        files: the files of the item, relative to the scanned folder.
    """

    path: str
    kind: str
    modality: str = UNKNOWN
    num_files: int = 1
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] | None = None
    dtype: str = UNKNOWN
    files: list[str] = field(default_factory=list)


@dataclass
class ScanProblem:
    """A file (or DICOM series) that cannot be used, or a warning about one.

    Args:
        path: path relative to the scanned folder.
        reason: what is wrong, in words.
        severity: ``"error"`` (not usable) or ``"warning"`` (listed as an item, but needs attention).
    """

    path: str
    reason: str
    severity: str = "error"


@dataclass
class ScanReport:
    """The result of :func:`scan_folder`.

    Args:
        root: the scanned folder.
        items: readable items, sorted by path.
        problems: unreadable files and warnings, sorted by path.
        layout: the task loader's verdict (``--task``), else ``None``.
    """

    root: str
    items: list[ScanItem] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    layout: LayoutReport | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable form: ``{"root", "items": [...], "problems": [...], "layout": {...} or None}``."""
        return {
            "root": self.root,
            "items": [asdict(item) for item in self.items],
            "problems": [asdict(problem) for problem in self.problems],
            "layout": self.layout.to_dict() if self.layout is not None else None,
        }

    def to_table(self) -> str:
        """A plain-text summary: the item table, then the problems with their reasons."""
        header = ("path", "kind", "modality", "files", "shape", "spacing", "dtype")
        rows = [
            (
                item.path,
                item.kind,
                item.modality,
                str(item.num_files),
                "x".join(str(s) for s in item.shape) or UNKNOWN,
                "x".join(f"{s:g}" for s in item.spacing) if item.spacing else UNKNOWN,
                item.dtype,
            )
            for item in self.items
        ]
        lines = [f"Scan of {self.root}: {len(self.items)} item(s), {len(self.problems)} problem(s)"]
        if rows:
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, tuple("-" * w for w in widths), *rows]:
                lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        else:
            lines.append("No readable item found.")
        if self.problems:
            lines.append("")
            lines.append("Problems:")
            width = max(len(p.severity) for p in self.problems)
            for p in self.problems:
                lines.append(f"  {p.severity.upper().ljust(width)}  {p.path}: {p.reason}")
        if self.layout is not None:
            lines += ["", self.layout.to_table()]
        return "\n".join(lines)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _file_kind(path: Path) -> str | None:
    """``"dicom"``, ``"nifti"``, ``"image"``, ``"npz"``, ``"metadata"`` or ``None`` (not a data file we read)."""
    if path.suffix.lower() in NPZ_EXTENSIONS:
        return "npz"
    if path.suffix.lower() in METADATA_EXTENSIONS:
        return "metadata"
    kind = image_reader_kind(path)
    return {"pydicom": "dicom", "nibabel": "nifti", "pil": "image"}.get(kind) if kind else None


# --------------------------------------------------------------------------------------------- DICOM


def _dicom_dtype(ds) -> str:
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32, 64):
        return UNKNOWN
    if bits in (32, 64) and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds):
        return f"float{bits}"
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return f"{'int' if signed else 'uint'}{bits}"


def _read_dicom(path: Path, check_pixels: bool) -> tuple[dict | None, str | None, str | None]:
    """Header fields of one DICOM file: ``(fields, error, warning)``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if path.suffix.lower() not in DICOM_EXTENSIONS and not pydicom.misc.is_dicom(path):
        return None, "not DICOM/NIfTI/image: no extension and no DICOM preamble ('DICM' at byte 128)", None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=not check_pixels)
    except InvalidDicomError as e:
        return None, f"not a DICOM file despite its extension ({e})", None
    except Exception as e:  # truncated headers raise EOFError, struct.error, OSError, ...
        return None, f"truncated or corrupt DICOM header ({type(e).__name__}: {e})", None
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        return (
            None,
            ("no image: Rows/Columns missing (a truncated header, or a non-image DICOM such as DICOMDIR or SR)"),
            None,
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    warning = None
    if tsyntax is not None and tsyntax.is_compressed:
        try:
            from pydicom.pixels import get_decoder

            available = get_decoder(tsyntax).is_available
        except Exception:  # no decoder registered for this syntax at all
            available = False
        if not available:
            warning = (
                f"compressed transfer syntax {tsyntax.name} ({tsyntax}) needs an optional codec package "
                "(pylibjpeg / gdcm)"
            )
    elif check_pixels and "PixelData" in ds:
        expected = int(rows) * int(cols) * samples * frames * int(ds.get("BitsAllocated", 8) or 8) // 8
        got = len(ds.PixelData)
        if got < expected:
            return None, f"truncated pixel data: {got} bytes, expected {expected} (Rows x Columns x ...)", None
    elif check_pixels and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return None, "truncated or image-less DICOM: no PixelData element", None
    iop = ds.get("ImageOrientationPatient")
    ipp = ds.get("ImagePositionPatient")
    fields = {
        "series": str(ds.get("SeriesInstanceUID", "") or f"(no SeriesInstanceUID) {path}"),
        "modality": str(ds.get("Modality", "") or UNKNOWN),
        "rows": int(rows),
        "cols": int(cols),
        "frames": frames,
        "samples": samples,
        "pixel_spacing": tuple(float(v) for v in ds.PixelSpacing) if "PixelSpacing" in ds else None,
        "thickness": float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None,
        "position": tuple(float(v) for v in ipp) if ipp is not None and len(ipp) == 3 else None,
        "orientation": tuple(float(v) for v in iop) if iop is not None and len(iop) == 6 else None,
        "dtype": _dicom_dtype(ds),
    }
    return fields, None, warning


def _slice_spacing(headers: list[dict]) -> float | None:
    """Median distance between sorted slice positions along the slice normal; else SliceThickness."""
    positions = [h["position"] for h in headers]
    if len(headers) > 1 and all(p is not None for p in positions):
        iop = headers[0]["orientation"]
        if iop is not None:
            normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
        else:
            normal = np.array([0.0, 0.0, 1.0])
        along = np.sort(np.asarray(positions) @ normal)
        gaps = np.diff(along)
        gaps = gaps[gaps > 1e-6]
        if gaps.size:
            return float(np.round(np.median(gaps), 6))
    return headers[0]["thickness"]


def _dicom_series(uid: str, files: list[tuple[Path, dict]], root: Path) -> tuple[ScanItem | None, ScanProblem | None]:
    files.sort(key=lambda f: f[0])
    first = files[0][0]
    label = f"{_rel(first.parent, root) if first.parent != root else '.'} [{uid}]"
    sizes: dict[tuple[int, int], int] = {}
    for _, h in files:
        sizes[(h["rows"], h["cols"])] = sizes.get((h["rows"], h["cols"]), 0) + 1
    if len(sizes) > 1:
        detail = ", ".join(f"{n} file(s) of {r}x{c}" for (r, c), n in sorted(sizes.items()))
        names = ", ".join(_rel(p, root) for p, _ in files)
        return None, ScanProblem(
            label, f"mixed series: inconsistent Rows/Columns within one SeriesInstanceUID ({detail}): {names}"
        )
    headers = [h for _, h in files]
    h0 = headers[0]
    frames = sum(h["frames"] for h in headers)
    shape: tuple[int, ...] = (h0["rows"], h0["cols"], frames)
    if h0["samples"] > 1:
        shape = (*shape, h0["samples"])
    spacing = None
    if h0["pixel_spacing"] is not None:
        depth = _slice_spacing(headers)
        spacing = (*h0["pixel_spacing"], depth) if depth is not None else h0["pixel_spacing"]
    modalities = sorted({h["modality"] for h in headers})
    item = ScanItem(
        path=label,
        kind="dicom-series",
        modality="+".join(modalities),
        num_files=len(files),
        shape=shape,
        spacing=spacing,
        dtype=h0["dtype"],
        files=[_rel(p, root) for p, _ in files],
    )
    return item, None


# --------------------------------------------------------------------------------------------- others


def _scan_nifti(path: Path, rel: str) -> ScanItem:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as e:
        raise ValueError(f"truncated or corrupt NIfTI header ({type(e).__name__}: {e})") from e
    shape = tuple(int(s) for s in img.shape)
    if not 2 <= len(shape) <= 4:
        raise ValueError(f"wrong dimension: NIfTI shape {shape}; expected 2 to 4 dimensions")
    try:
        data = np.asanyarray(img.dataobj)  # reads the whole file: a truncated .nii/.nii.gz fails here
    except Exception as e:
        raise ValueError(f"truncated or corrupt NIfTI data ({type(e).__name__}: {e})") from e
    if np.issubdtype(data.dtype, np.floating) and np.isnan(data).any():
        raise ValueError(f"NIfTI contains {int(np.isnan(data).sum())} NaN voxel(s)")
    zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
    return ScanItem(rel, "nifti", UNKNOWN, 1, shape, zooms, str(img.header.get_data_dtype()), [rel])


def _nifti_warning(item: ScanItem) -> str | None:
    """What the loaders make of a 4D NIfTI (the classification reader raises; segmentation takes channels)."""
    if len(item.shape) != 4:
        return None
    return (
        f"4D NIfTI {item.shape}: classification rejects it (2D images and 3D volumes only); segmentation reads "
        f"its last axis as {item.shape[-1]} channels (the bundle's in_channels must then be {item.shape[-1]})"
    )


def _scan_metadata(path: Path, rel: str) -> ScanItem:
    return ScanItem(rel, "metadata", files=[rel])


def _scan_image(path: Path, rel: str) -> ScanItem:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # a truncated image fails here
        array = np.asarray(im)
    if array.ndim not in (2, 3):
        raise ValueError(f"wrong dimension: image array shape {array.shape}; expected (H, W) or (H, W, C)")
    return ScanItem(rel, "image", UNKNOWN, 1, tuple(array.shape), None, str(array.dtype), [rel])


def _scan_npz(path: Path, rel: str) -> ScanItem:
    data = load_medmnist(path)
    images = [split[0] for split in data.splits.values()]
    first = images[0]
    return ScanItem(
        rel,
        "npz",
        data.modality,
        int(sum(len(x) for x in images)),
        tuple(int(s) for s in first.shape[1:]),
        None,
        str(first.dtype),
        [rel],
    )


_SINGLE_FILE = {"nifti": _scan_nifti, "image": _scan_image, "npz": _scan_npz, "metadata": _scan_metadata}


def scan_folder(path: str | os.PathLike, *, check_pixels: bool = True) -> ScanReport:
    """Scan ``path`` recursively and describe every readable item and every bad file.

    Args:
        path: the site's data folder.
        check_pixels: read whole DICOM files (not only headers) to detect truncated pixel data; set
            ``False`` for a header-only scan of a very large folder.

    Returns:
        The report; it never raises for a bad file inside the folder.

    Raises:
        FileNotFoundError: when ``path`` is not an existing folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"'{root}': not an existing folder; expected the site's data folder.")
    report = ScanReport(root=str(root))
    series: dict[tuple[Path, str], list[tuple[Path, dict]]] = {}  # (folder, SeriesInstanceUID) -> files
    series_warnings: dict[tuple[Path, str], set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            rel = _rel(file, root)
            kind = None
            try:
                if file.stat().st_size == 0:
                    report.problems.append(ScanProblem(rel, "empty file (0 bytes)"))
                    continue
                kind = _file_kind(file)
                if kind is None:
                    report.problems.append(
                        ScanProblem(
                            rel,
                            "not DICOM/NIfTI/image/npz: unknown extension "
                            f"(expected {', '.join(DICOM_EXTENSIONS + NIFTI_EXTENSIONS + IMAGE_EXTENSIONS)}, "
                            ".npz or an extension-less DICOM file)",
                        )
                    )
                elif kind == "dicom":
                    fields, error, warning = _read_dicom(file, check_pixels)
                    if error is not None:
                        report.problems.append(ScanProblem(rel, error))
                        continue
                    key = (file.parent, fields["series"])  # a series is one folder's files, as the loaders read it
                    series.setdefault(key, []).append((file, fields))
                    if warning is not None:
                        series_warnings.setdefault(key, set()).add(warning)
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        item = _SINGLE_FILE[kind](file, rel)
                    report.items.append(item)
                    if kind == "nifti" and _nifti_warning(item):
                        report.problems.append(ScanProblem(rel, _nifti_warning(item), severity="warning"))
            except Exception as e:  # never crash on one file: report it and go on
                reason = (
                    str(e) if isinstance(e, ValueError) else f"unreadable {kind or 'file'} ({type(e).__name__}: {e})"
                )
                report.problems.append(ScanProblem(rel, reason))
    for key, files in series.items():
        item, problem = _dicom_series(key[1], files, root)
        if item is not None:
            report.items.append(item)
            for warning in sorted(series_warnings.get(key, ())):
                report.problems.append(ScanProblem(item.path, warning, severity="warning"))
        if problem is not None:
            report.problems.append(problem)
    report.items.sort(key=lambda i: i.path)
    report.problems.sort(key=lambda p: (p.path, p.reason))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m omnifm_monai.scan <folder> [--task TASK] [--json out.json]``.

    Returns:
        0 when at least one readable image item was found (with ``--task``: the layout is usable), 1
        otherwise (or when the folder does not exist).
    """
    parser = argparse.ArgumentParser(
        prog="python -m omnifm_monai.scan",
        description="Scan a site's data folder: list DICOM series, NIfTI, images and .npz files, and bad files.",
    )
    parser.add_argument("folder", help="the site's data folder, scanned recursively")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the report as JSON here")
    parser.add_argument(
        "--headers-only", action="store_true", help="read DICOM headers only (no truncated pixel data check)"
    )
    parser.add_argument("--task", choices=TASK_CHOICES, default=None, help="also judge the layout with its loader")
    parser.add_argument("--in-channels", type=int, default=None, help="with --task (default: the bundle's)")
    parser.add_argument("--spatial-dims", type=int, default=2, help="segmentation: 2 (slices) or 3 (volumes)")
    args = parser.parse_args(argv)
    try:
        report = scan_folder(args.folder, check_pixels=not args.headers_only)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    if args.task:
        options = {"in_channels": args.in_channels, "spatial_dims": args.spatial_dims}
        report.layout = check_layout(args.folder, args.task, **options)
        shapes = {item.path: item.shape for item in report.items if item.kind == "nifti"}
        report.problems += [ScanProblem(p, r, "warning") for p, r in pair_shape_problems(report.layout, shapes)]
    print(report.to_table())
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if report.layout is not None:
        return 0 if report.layout.ok else 1
    return 0 if any(item.kind != "metadata" for item in report.items) else 1


if __name__ == "__main__":
    sys.exit(main())
