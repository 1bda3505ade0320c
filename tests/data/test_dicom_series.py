"""DICOM series folders: stray files named and skipped, series folders found and read as one input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from omnifm_monai.data.classification import load_classification_split
from omnifm_monai.data.dicom_series import DicomSeriesReader, is_series_folder, series_folder_files
from omnifm_monai.data.image_io import find_input_files, image_reader_kind, load_image_file
from omnifm_monai.data.super_resolution import load_super_resolution_split

SIZE = 16


def write_series(folder: Path, num_slices: int = 5, *, size: int = SIZE, seed: int = 0) -> str:
    """``num_slices`` CT slices of one new series (``CT_small.dcm`` headers, random pixels); the series UID."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    series, rng = generate_uid(), np.random.default_rng(seed)
    for i in range(num_slices):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series, generate_uid(), i + 1
        ds.ImagePositionPatient, ds.SliceLocation, ds.SliceThickness = [0.0, 0.0, 2.0 * i], 2.0 * i, 2.0
        ds.Rows = ds.Columns = size
        ds.PixelData = rng.integers(0, 1000, (size, size), dtype=np.int16).tobytes()
        ds.save_as(folder / f"slice{i:03d}.dcm")
    return series


def _add_strays(folder: Path) -> dict[str, str]:
    """One stray of each kind in ``folder``; file name -> a word its warning must contain."""
    (folder / "README.txt").write_text("exported by PACS\n")
    shutil.copy(get_testdata_file("MR_small.dcm", download=False), folder / "other_series.dcm")
    corrupt = pydicom.dcmread(folder / "slice001.dcm")
    corrupt.InstanceNumber, corrupt.SOPInstanceUID = 99, generate_uid()
    corrupt.save_as(folder / "truncated.dcm")
    data = (folder / "truncated.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) - SIZE * SIZE])  # half the pixel data lost
    (folder / "empty.dcm").write_bytes(b"")
    return {
        "README.txt": "not a DICOM",
        "other_series.dcm": "another series",
        "truncated.dcm": "pixel data",
        "empty.dcm": "DICOM",
    }


def test_series_folder_files_names_the_strays(tmp_path):
    uid = write_series(tmp_path / "ct")
    _add_strays(tmp_path / "ct")
    series = series_folder_files(tmp_path / "ct")
    assert series.uid == uid and series.positioned
    assert [p.name for p in series.files] == [f"slice{i:03d}.dcm" for i in range(5)] + ["truncated.dcm"]
    skipped = {p.name: reason for p, reason in series.skipped}
    assert set(skipped) == {"README.txt", "other_series.dcm", "empty.dcm"}  # truncated pixels: only on reading
    assert "another series" in skipped["other_series.dcm"] and "not a DICOM" in skipped["README.txt"]


def test_reader_skips_every_stray_with_a_warning_and_reads_the_series(tmp_path, caplog):
    write_series(tmp_path / "ct")
    strays = _add_strays(tmp_path / "ct")
    caplog.set_level(logging.WARNING)
    reader = DicomSeriesReader()
    volume = LoadImage(reader=reader, image_only=True)(str(tmp_path / "ct"))
    assert tuple(volume.shape) == (SIZE, SIZE, 5)
    assert float(volume.affine[2, 2]) == pytest.approx(2.0)  # the slice spacing from the positions
    assert {p.name for p, _ in reader.skipped} == set(strays)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name, word in strays.items():
        assert any(name in m and word in m for m in messages), name


def test_a_slice_of_another_size_or_without_instance_number_is_skipped(tmp_path):
    write_series(tmp_path / "ct", 4)
    odd = pydicom.dcmread(tmp_path / "ct" / "slice000.dcm")
    odd.Rows = odd.Columns = 8
    odd.PixelData, odd.InstanceNumber = np.zeros((8, 8), np.int16).tobytes(), 10
    odd.save_as(tmp_path / "ct" / "small.dcm")
    unnumbered = pydicom.dcmread(tmp_path / "ct" / "slice001.dcm")
    del unnumbered.InstanceNumber
    unnumbered.save_as(tmp_path / "ct" / "unnumbered.dcm")
    skipped = dict((p.name, r) for p, r in series_folder_files(tmp_path / "ct").skipped)
    assert "8 x 8 pixels" in skipped["small.dcm"] and "InstanceNumber" in skipped["unnumbered.dcm"]


def test_a_folder_without_dicom_images_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="no DICOM image in the folder .1 file.s. skipped; notes.txt"):
        series_folder_files(tmp_path)


def test_series_folders_are_found_and_single_images_stay_files(tmp_path):
    write_series(tmp_path / "site" / "patient" / "ct")
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), tmp_path / "site" / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm", download=False), tmp_path / "site" / "b.dcm")
    assert is_series_folder(tmp_path / "site" / "patient" / "ct")
    assert not is_series_folder(tmp_path / "site")  # two images of two series: separate images
    assert image_reader_kind(tmp_path / "site" / "patient" / "ct") == "dicom_series"
    found = [p.relative_to(tmp_path / "site").as_posix() for p in find_input_files(tmp_path / "site")]
    assert found == ["a.dcm", "b.dcm", "patient/ct"]


def test_load_image_file_gives_the_middle_slice_of_a_series(tmp_path):
    write_series(tmp_path / "ct")
    _add_strays(tmp_path / "ct")
    image = load_image_file(tmp_path / "ct", image_size=8, in_channels=1)
    assert image.shape == (1, 8, 8) and 0.0 <= image.min() and image.max() <= 1.0
    with pytest.raises(ValueError, match="not a DICOM series"):
        load_image_file(tmp_path, image_size=8, in_channels=1)


def test_the_2d_loaders_take_a_series_folder_as_one_sample(tmp_path):
    for split in ("train", "val", "test"):
        write_series(tmp_path / "cls" / split / "ct" / "patient" / "series")
        (tmp_path / "cls" / split / "ct" / "patient" / "series" / "README.txt").write_text("stray")
        shutil.copy(get_testdata_file("MR_small.dcm", download=False), tmp_path / "cls" / split / "mr.dcm")
        (tmp_path / "cls" / split / "mr").mkdir()
        shutil.copy(get_testdata_file("MR_small.dcm", download=False), tmp_path / "cls" / split / "mr" / "a.dcm")
    items = load_classification_split(tmp_path / "cls", "train", image_size=8, in_channels=1)
    assert sorted(int(d["label"]) for d in items) == [0, 1]  # the series once (class ct), the MR file once
    write_series(tmp_path / "sr" / "train" / "series")
    hr = load_super_resolution_split(tmp_path / "sr", "train", image_size=8, in_channels=1)
    assert len(hr) == 1 and hr[0]["label"].shape == (1, 8, 8)
