"""Tests of the classification datalists: phantom, MedMNIST .npz and folders of PNG/NIfTI/DICOM files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from omnifm_monai.data.classification import class_names_for, load_classification_split


def _check_items(items: list[dict], channels: int, size: int) -> None:
    for item in items:
        image, label = item["image"], item["label"]
        assert image.shape == (channels, size, size) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert isinstance(label, np.int64)


# ---- phantom ----------------------------------------------------------------------------------------


def test_phantom_default_shapes_and_ranges():
    from omnifm_monai.data.phantom import FINDINGS

    items = load_classification_split(None, "train", image_size=32, num_samples=21)
    assert len(items) == 21
    _check_items(items, 3, 32)
    assert {int(i["label"]) for i in items} <= set(range(len(FINDINGS)))
    gray = load_classification_split("phantom", "train", image_size=32, in_channels=1, num_samples=21)
    _check_items(gray, 1, 32)
    assert class_names_for("") == tuple(FINDINGS)


def test_phantom_splits_use_different_seeds_and_are_deterministic():
    train = load_classification_split("", "train", image_size=32, num_samples=14, seed=5)
    again = load_classification_split("", "train", image_size=32, num_samples=14, seed=5)
    val = load_classification_split("", "val", image_size=32, num_samples=14, seed=5)
    np.testing.assert_array_equal(np.stack([i["image"] for i in train]), np.stack([i["image"] for i in again]))
    assert not np.array_equal(np.stack([i["image"] for i in train]), np.stack([i["image"] for i in val]))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_classification_split(None, "training")
    with pytest.raises(ValueError, match="in_channels"):
        load_classification_split(None, "train", in_channels=2)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_classification_split(tmp_path / "missing", "train")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_classification_split(tmp_path / "notes.txt", "train")


# ---- MedMNIST .npz ----------------------------------------------------------------------------------


def _write_npz(path: Path, rgb: bool, size: int = 28) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 4), ("test", 5)):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
    np.savez_compressed(path, **arrays)
    return path


def test_npz_gray_to_rgb_without_resize(tmp_path):
    file = _write_npz(tmp_path / "site_export.npz", rgb=False)
    items = load_classification_split(file, "val", image_size=28, in_channels=3)
    _check_items(items, 3, 28)
    raw = np.load(file)["val_images"]
    np.testing.assert_allclose(items[1]["image"][0], raw[1] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(items[1]["image"][0], items[1]["image"][2])  # gray repeated
    assert [int(i["label"]) for i in items] == [0, 1, 0, 1]
    assert class_names_for(file) == ("class_0", "class_1")


def test_npz_rgb_to_gray_with_resize(tmp_path):
    file = _write_npz(tmp_path / "retina_like.npz", rgb=True)
    items = load_classification_split(file, "test", image_size=64, in_channels=1)
    assert len(items) == 5
    _check_items(items, 1, 64)


# ---- folders of image files -------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "hospital"
    rng = np.random.default_rng(0)
    # class "benign": PNGs (gray, RGB, RGBA, palette) and a 2D NIfTI
    _png(root / "train" / "benign" / "gray.png", rng.integers(0, 256, (40, 40), dtype=np.uint8))
    _png(root / "train" / "benign" / "rgb.png", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
    _png(root / "train" / "benign" / "rgba.png", rng.integers(0, 256, (16, 16, 4), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).convert("P").save(
        root / "train" / "benign" / "palette.png"
    )
    nib.save(
        nib.Nifti1Image(rng.random((24, 24)).astype(np.float32), np.eye(4)),
        root / "train" / "benign" / "s.nii",
    )
    # class "malignant": a 3D NIfTI volume and DICOM files (with and without extension, in a sub-folder)
    volume = np.zeros((16, 16, 9), np.float32)
    for z in range(9):
        volume[z, 0, z] = 1.0  # slice z has its bright pixel at row z
    malignant = root / "train" / "malignant"
    malignant.mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), malignant / "volume.nii.gz")
    ct = get_testdata_file("CT_small.dcm", download=False)
    shutil.copy(ct, malignant / "ct.dcm")
    (malignant / "patient_7").mkdir()
    shutil.copy(ct, malignant / "patient_7" / "IM0001")
    # unreadable files: garbage PNG, truncated NIfTI, truncated DICOM
    (malignant / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    nib.save(nib.Nifti1Image(rng.random((16, 16, 9)).astype(np.float32), np.eye(4)), tmp_path / "full.nii.gz")
    full = (tmp_path / "full.nii.gz").read_bytes()
    (malignant / "cut.nii.gz").write_bytes(full[: len(full) // 2])
    shutil.copy(get_testdata_file("MR_truncated.dcm", download=False), malignant / "mr_truncated.dcm")
    # val: only one class of three; "normal" exists only in test
    _png(root / "val" / "benign" / "v.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    (root / "test" / "normal").mkdir(parents=True)
    (root / "test" / "benign").mkdir(parents=True)
    return root


def test_folder_reads_png_nifti_dicom_and_skips_broken(image_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="omnifm_monai.data.classification"):
        items = load_classification_split(image_folder, "train", image_size=16, in_channels=3)
    _check_items(items, 3, 16)
    labels = [int(i["label"]) for i in items]
    assert labels.count(0) == 5  # benign: 4 PNG + 1 NIfTI
    assert labels.count(1) == 3  # malignant: NIfTI volume + 2 DICOM
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ("broken.png", "cut.nii.gz", "mr_truncated.dcm"):
        assert name in warned
    assert class_names_for(image_folder) == ("benign", "malignant", "normal")


def test_folder_orientation_and_middle_slice(tmp_path):
    root = tmp_path / "d"
    png = np.zeros((16, 16), np.uint8)
    png[2, 7] = 255
    _png(root / "train" / "a" / "x.png", png)
    volume = np.zeros((16, 16, 9), np.float32)
    for z in range(9):
        volume[z, 0, z] = 1.0
    (root / "train" / "b").mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "train" / "b" / "v.nii.gz")
    items = load_classification_split(root, "train", image_size=16, in_channels=1)
    png_item, nifti_item = items
    assert np.unravel_index(np.argmax(png_item["image"][0]), (16, 16)) == (2, 7)  # (H, W) like numpy
    assert np.unravel_index(np.argmax(nifti_item["image"][0]), (16, 16)) == (4, 0)  # middle slice z = 4


def test_folder_dicom_intensities(tmp_path):
    root = tmp_path / "d"
    (root / "train" / "ct").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), root / "train" / "ct" / "a.dcm")
    (item,) = load_classification_split(root, "train", image_size=128, in_channels=1)
    image = item["image"][0]
    assert image.min() == 0.0 and image.max() == 1.0 and image.std() > 0.05


def test_monochrome1_is_inverted(tmp_path):
    # Prepare: the same CT slice stored as MONOCHROME2 and as MONOCHROME1 (minimum shown white)
    import pydicom

    from omnifm_monai.data.image_io import load_image_file

    source = get_testdata_file("CT_small.dcm", download=False)
    ds = pydicom.dcmread(source)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    # Execute
    normal = load_image_file(source, image_size=128, in_channels=1)
    inverted = load_image_file(tmp_path / "mono1.dcm", image_size=128, in_channels=1)
    # Assert: what was darkest is now brightest
    np.testing.assert_allclose(inverted, 1.0 - normal, atol=1e-5)


def test_folder_empty_split_names_folder(image_folder):
    with pytest.raises(ValueError, match="test"):
        load_classification_split(image_folder, "test")
    val = load_classification_split(image_folder, "val", image_size=16)
    assert [int(i["label"]) for i in val] == [0]


def test_folder_without_split_folders(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="one file"):
        load_classification_split(tmp_path, "train")
