"""Tests for ``omnifm_monai.scan``: a site folder built from pydicom's own test files plus generated files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from omnifm_monai.scan import ScanReport, main, scan_folder

SERIES_UID = "1.2.826.0.1.3680043.8.498.1001"
MIXED_UID = "1.2.826.0.1.3680043.8.498.1002"


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def _write_series(ct: Path, folder: Path, uid: str, rows: list[int] | None = None) -> None:
    """Three slices of CT_small.dcm, 2.5 mm apart, one SeriesInstanceUID; ``rows`` changes Rows per slice."""
    folder.mkdir(parents=True)
    for i in range(3):
        ds = pydicom.dcmread(ct)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{i + 1}"
        ds.InstanceNumber = i + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * i]
        if rows is not None:
            ds.Rows = rows[i]
        ds.save_as(folder / f"slice{i + 1}.dcm")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    # Prepare: good files
    ct, mr = _testdata("CT_small.dcm"), _testdata("MR_small.dcm")
    root = tmp_path / "site"
    (root / "single").mkdir(parents=True)
    shutil.copy(ct, root / "single" / "ct.dcm")
    shutil.copy(mr, root / "single" / "mr_noext")  # no extension: tried as DICOM
    _write_series(ct, root / "series", SERIES_UID)
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    nii = nib.Nifti1Image(vol, np.diag([1.5, 1.5, 3.0, 1.0]))
    nib.save(nii, root / "vol.nii.gz")
    Image.fromarray(np.zeros((8, 10), dtype=np.uint8)).save(root / "xray.png")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(root / "breast.npz", modality=np.asarray("US"), **arrays)

    # Prepare: bad files
    bad = root / "bad"
    bad.mkdir()
    data = ct.read_bytes()
    (bad / "cut.dcm").write_bytes(data[: len(data) // 2])
    noise = rng.standard_normal((16, 16, 16)).astype(np.float32)  # incompressible: cutting keeps the header
    nib.save(nib.Nifti1Image(noise, np.eye(4)), bad / "cut.nii.gz")
    raw = (bad / "cut.nii.gz").read_bytes()
    (bad / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    (bad / "x.dcm").write_text("this is not a DICOM file\n")
    (bad / "empty.png").write_bytes(b"")
    nan_vol = vol.copy()
    nan_vol[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(nan_vol, np.eye(4)), bad / "nan.nii")
    _write_series(ct, bad / "mixed", MIXED_UID, rows=[128, 128, 64])
    return root


def _by_path(report: ScanReport) -> dict:
    return {item.path: item for item in report.items}


def test_items_modality_slices_spacing(site: Path) -> None:
    # Execute
    report = scan_folder(site)
    items = _by_path(report)

    # Assert
    assert len(items) == 6
    series = items[f"series [{SERIES_UID}]"]
    assert (series.kind, series.modality, series.num_files, series.shape) == ("dicom-series", "CT", 3, (128, 128, 3))
    assert series.spacing == pytest.approx((0.661468, 0.661468, 2.5))
    assert series.dtype == "int16"
    kinds = {(i.kind, i.modality) for i in report.items}
    assert ("dicom-series", "MR") in kinds
    single_ct = [i for i in report.items if i.files == ["single/ct.dcm"]][0]
    assert single_ct.spacing == pytest.approx((0.661468, 0.661468, 5.0))  # SliceThickness for one file
    nifti = items["vol.nii.gz"]
    assert (nifti.kind, nifti.shape, nifti.dtype) == ("nifti", (4, 5, 6), "float32")
    assert nifti.spacing == pytest.approx((1.5, 1.5, 3.0))
    assert (items["xray.png"].kind, items["xray.png"].shape) == ("image", (8, 10))
    npz = items["breast.npz"]
    assert (npz.kind, npz.modality, npz.num_files, npz.shape) == ("npz", "US", 8, (28, 28))


def test_every_bad_file_reported(site: Path) -> None:
    # Execute
    report = scan_folder(site)
    reasons = {p.path: p.reason for p in report.problems}

    # Assert
    assert "truncated" in reasons["bad/cut.dcm"]
    assert "truncated or corrupt NIfTI data" in reasons["bad/cut.nii.gz"]
    assert "not a DICOM" in reasons["bad/x.dcm"]
    assert "empty" in reasons["bad/empty.png"]
    assert "NaN" in reasons["bad/nan.nii"]
    mixed = reasons[f"bad/mixed [{MIXED_UID}]"]
    assert "mixed series" in mixed and "128x128" in mixed and "64x128" in mixed
    assert len(report.problems) == 6
    assert all(p.severity == "error" for p in report.problems)
    table = report.to_table()
    for name in ("cut.dcm", "cut.nii.gz", "x.dcm", "empty.png", "nan.nii", "mixed"):
        assert name in table


def test_wrong_dimension_and_unknown_extension(tmp_path: Path) -> None:
    # Prepare
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 2, 2), np.float32), np.eye(4)), tmp_path / "five_d.nii")
    (tmp_path / "notes.txt").write_text("hello")

    # Execute
    report = scan_folder(tmp_path)
    reasons = {p.path: p.reason for p in report.problems}

    # Assert
    assert report.items == []
    assert "wrong dimension" in reasons["five_d.nii"]
    assert "not DICOM/NIfTI/image" in reasons["notes.txt"]


def test_compressed_without_codec_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a JPEG 2000 file, with every decoder reported unavailable
    path = get_testdata_file("MR_small_jp2klossless.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test file MR_small_jp2klossless.dcm is not installed")
    shutil.copy(path, tmp_path / "mr_j2k.dcm")
    import pydicom.pixels

    class _NoCodec:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: _NoCodec())

    # Execute
    report = scan_folder(tmp_path)

    # Assert
    assert len(report.items) == 1 and report.items[0].modality == "MR"
    (problem,) = report.problems
    assert problem.severity == "warning" and "needs an optional codec package" in problem.reason


def test_main_exit_codes_and_json(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Execute
    out = tmp_path / "scan.json"
    code = main([str(site), "--json", str(out)])
    printed = capsys.readouterr().out

    # Assert
    assert code == 0
    assert "dicom-series" in printed and "Problems:" in printed
    data = json.loads(out.read_text())
    assert len(data["items"]) == 6 and len(data["problems"]) == 6
    assert {"path", "kind", "modality", "num_files", "shape", "spacing", "dtype"} <= set(data["items"][0])

    only_bad = site / "bad"
    assert main([str(only_bad)]) == 1
    assert main([str(tmp_path / "missing")]) == 1
