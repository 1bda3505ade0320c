"""Segmentation datalists: phantom, site .npz, Decathlon NIfTI folder, DICOM series folder, federation."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from omnifm_monai.data.federation import build_segmentation_federation
from omnifm_monai.data.phantom import MODALITIES, TISSUES
from omnifm_monai.data.segmentation import (
    SegmentationData,
    load_segmentation_npz,
    load_segmentation_split,
    segmentation_class_names,
    segmentation_inference_datalist,
)

SIZE = 32


def _check_items(items, channels, spatial):
    assert items
    for d in items:
        assert d["image"].shape == (channels, *spatial) and d["image"].dtype == np.float32
        assert d["label"].shape == (1, *spatial) and d["label"].dtype == np.int64
        assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0


def _volume(rng, shape=(SIZE, SIZE, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A noisy volume with a bright box (label 1) and a smaller box inside it (label 2) on some slices."""
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[8:24, 8:24, 2:6] = 1
    label[12:18, 12:18, 3:5] = 2
    image[label > 0] += 200.0
    return image, label


def _decathlon(root: Path, num_cases: int = 5, corrupt: bool = False) -> Path:
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([-1.5, -1.5, 3.0, 1.0])  # LPS-like storage: Orientationd flips it to RAS
    training = []
    for i in range(num_cases):
        image, label = _volume(rng)
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"case_{i}.nii.gz")
        training.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    if corrupt:
        (root / "imagesTr" / "case_0.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    spec = {"name": "toy", "labels": {"0": "background", "1": "organ", "2": "tumour"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def _dicom_series(folder: Path, num_slices: int = 8) -> None:
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    series, rng = generate_uid(), np.random.default_rng(1)
    for i in range(num_slices):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series, generate_uid(), i + 1
        ds.ImagePositionPatient, ds.SliceLocation, ds.SliceThickness = [0.0, 0.0, 2.0 * i], 2.0 * i, 2.0
        ds.Rows = ds.Columns = SIZE
        ds.PixelData = rng.integers(0, 1000, (SIZE, SIZE), dtype=np.int16).tobytes()
        ds.save_as(folder / f"slice{i:03d}.dcm")


def _dicom_folder(root: Path, num_cases: int = 4) -> Path:
    for i in range(num_cases):
        _dicom_series(root / f"case{i}" / "image")
        volume = LoadImage(reader="PydicomReader", image_only=True)(str(root / f"case{i}" / "image"))
        label = np.zeros(volume.shape, np.uint8)  # the mask on the series' own voxel grid and affine
        label[4:20, 6:26, 2:6] = 1
        nib.save(nib.Nifti1Image(label, volume.affine.numpy()), root / f"case{i}" / "label.nii.gz")
    (root / "labels.json").write_text(json.dumps({"0": "background", "1": "organ"}))
    return root


# ---- phantom and npz ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_phantom_split_shapes_and_tissue_labels(spatial_dims):
    items = load_segmentation_split("phantom", "train", image_size=SIZE, spatial_dims=spatial_dims, num_samples=7)
    _check_items(items, 1, (SIZE,) * spatial_dims)
    assert len(items) == 7 and max(int(d["label"].max()) for d in items) <= len(TISSUES) - 1
    assert segmentation_class_names("") == TISSUES


def test_phantom_splits_differ_and_are_seeded():
    train = load_segmentation_split(None, "train", image_size=SIZE, num_samples=7, in_channels=3)
    again = load_segmentation_split("", "train", image_size=SIZE, num_samples=7, in_channels=3)
    test = load_segmentation_split("", "test", image_size=SIZE, num_samples=7, in_channels=3)
    _check_items(train, 3, (SIZE, SIZE))
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(train, again))
    assert not np.array_equal(train[0]["image"], test[0]["image"])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        s: (rng.integers(0, 256, (3, 1, 40, 40), np.uint8), rng.integers(0, 3, (3, 40, 40), np.uint8))
        for s in ("train", "val", "test")
    }
    SegmentationData("site-1", "CT", splits, ("bg", "a", "b")).save_npz(tmp_path / "site.npz")
    data = load_segmentation_npz(tmp_path / "site.npz")
    assert (data.name, data.modality, data.class_names) == ("site-1", "CT", ("bg", "a", "b"))
    np.testing.assert_array_equal(data.splits["val"][1], splits["val"][1])
    items = load_segmentation_split(tmp_path / "site.npz", "val", image_size=SIZE)  # resized 40 -> 32
    _check_items(items, 1, (SIZE, SIZE))
    assert set(np.unique(np.concatenate([d["label"].ravel() for d in items]))) <= {0, 1, 2}
    assert segmentation_class_names(tmp_path / "site.npz") == ("bg", "a", "b")


def test_bad_npz_and_arguments(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_segmentation_split(tmp_path / "bad.npz", "train", image_size=SIZE)
    with pytest.raises(ValueError, match="split"):
        load_segmentation_split("", "holdout", image_size=SIZE)
    with pytest.raises(ValueError, match="spatial_dims"):
        load_segmentation_split("", "train", image_size=SIZE, spatial_dims=4)
    with pytest.raises(FileNotFoundError):
        load_segmentation_split(tmp_path / "missing", "train", image_size=SIZE)


# ---- Decathlon NIfTI ----------------------------------------------------------------------------------


def test_decathlon_2d_slices_3d_volumes_and_class_names(tmp_path):
    root = _decathlon(tmp_path / "Task01_Toy")
    assert segmentation_class_names(root) == ("background", "organ", "tumour")
    sizes = {}
    for split in ("train", "val", "test"):
        items = load_segmentation_split(root, split, image_size=SIZE, spatial_dims=2, seed=0)
        _check_items(items, 1, (SIZE, SIZE))
        sizes[split] = len(items)
        empty = sum(int(d["label"].max() == 0) for d in items)
        assert 0 < empty < len(items)  # foreground slices plus a sample of empty ones
    assert sizes["train"] == 3 * 5  # 3 of 5 cases; 4 foreground slices + 1 empty each
    volumes = load_segmentation_split(root, "train", image_size=SIZE, spatial_dims=3)
    _check_items(volumes, 1, (SIZE,) * 3)
    assert len(volumes) == 3 and {int(v) for d in volumes for v in np.unique(d["label"])} == {0, 1, 2}


def test_decathlon_orientation_is_ras(tmp_path):
    """A box stored in the first half of an LPS-like x axis ends in the second half after RAS reorientation."""
    root = tmp_path / "Task02"
    (root / "imagesTr").mkdir(parents=True)
    image, label = np.zeros((SIZE, SIZE, 4), np.float32), np.zeros((SIZE, SIZE, 4), np.uint8)
    label[2:10, :, :] = 1
    image[label > 0] = 1.0
    for i in range(3):
        nib.save(nib.Nifti1Image(image, np.diag([-1.0, 1.0, 1.0, 1.0])), root / "imagesTr" / f"i{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.diag([-1.0, 1.0, 1.0, 1.0])), root / "imagesTr" / f"l{i}.nii.gz")
    training = [{"image": f"imagesTr/i{i}.nii.gz", "label": f"imagesTr/l{i}.nii.gz"} for i in range(3)]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    item = load_segmentation_split(root, "train", image_size=SIZE, spatial_dims=3)[0]
    assert item["label"][0, 22:30].all() and not item["label"][0, :22].any() and not item["label"][0, 30:].any()
    np.testing.assert_array_equal(item["image"][0] > 0.5, item["label"][0] > 0)


def test_decathlon_explicit_validation_list(tmp_path):
    root = _decathlon(tmp_path / "Task03", num_cases=4)
    spec = json.loads((root / "dataset.json").read_text())
    spec["validation"] = spec["training"][:1]
    spec["training"] = spec["training"][1:]
    (root / "dataset.json").write_text(json.dumps(spec))
    val = load_segmentation_split(root, "val", image_size=SIZE, spatial_dims=3)
    assert len(val) == 1


def test_unreadable_case_is_skipped_with_a_warning(tmp_path, caplog):
    root = _decathlon(tmp_path / "Task04", num_cases=5, corrupt=True)
    caplog.set_level(logging.WARNING)
    cases = []
    for split in ("train", "val", "test"):
        try:
            cases += load_segmentation_split(root, split, image_size=SIZE, spatial_dims=3)
        except ValueError as e:  # the split that held only the corrupt case says so
            assert "no readable case" in str(e)
    assert len(cases) == 4
    assert any("case_0.nii.gz" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b not really gzip"], ids=["empty", "corrupt"])
def test_unreadable_case_warning_names_the_file_and_one_reader(tmp_path, caplog, content):
    root = _decathlon(tmp_path / "Task04", num_cases=3)
    (root / "labelsTr" / "case_1.nii.gz").write_bytes(content)  # the label, not the image, is bad
    caplog.set_level(logging.INFO)
    for split in ("train", "val", "test"):
        try:
            load_segmentation_split(root, split, image_size=SIZE, spatial_dims=3)
        except ValueError as e:
            assert str(e).count("\n") == 0 and "no readable case" in str(e)
    (warning,) = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Skipping" in r.getMessage()
    ]
    assert "'" + str(root / "labelsTr" / "case_1.nii.gz") + "' cannot be read by NibabelReader" in warning
    assert "LoadImage" not in warning and "applying transform" not in warning and "\n" not in warning
    assert not [r for r in caplog.records if "unable to load" in r.getMessage()]  # no fallback to other readers
    assert any("case(s), skipped" in r.getMessage() for r in caplog.records)  # each split's summary


# ---- DICOM series ----------------------------------------------------------------------------------------


def test_dicom_series_folder(tmp_path):
    root = _dicom_folder(tmp_path / "dicom")
    assert segmentation_class_names(root) == ("background", "organ")
    items = load_segmentation_split(root, "train", image_size=SIZE, spatial_dims=2)
    _check_items(items, 1, (SIZE, SIZE))
    assert any(d["label"].max() == 1 for d in items)
    volumes = load_segmentation_split(root, "train", image_size=SIZE, spatial_dims=3)
    _check_items(volumes, 1, (SIZE,) * 3)


def test_a_stray_file_in_a_series_folder_is_named_and_skipped(tmp_path, caplog):
    root = _dicom_folder(tmp_path / "dicom", num_cases=3)
    image = root / "case0" / "image"
    (image / "README.txt").write_text("exported by PACS")
    shutil.copy(get_testdata_file("MR_small.dcm", download=False), image / "other_series.dcm")
    caplog.set_level(logging.WARNING)
    cases = [load_segmentation_split(root, s, image_size=SIZE, spatial_dims=3) for s in ("train", "val", "test")]
    assert sum(len(c) for c in cases) == 3  # case0 still read: its stray files skipped, not the case
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("README.txt" in m and "not a DICOM" in m for m in messages)
    assert any("other_series.dcm" in m and "another series" in m for m in messages)
    items, skipped = segmentation_inference_datalist(image)
    assert len(items) == 1 and not skipped


def test_inference_datalist_finds_nifti_and_series_and_skips_bad_files(tmp_path, caplog):
    folder = tmp_path / "in"
    _dicom_series(folder / "patient" / "ct")
    nib.save(nib.Nifti1Image(np.ones((SIZE, SIZE, 4), np.float32), np.eye(4)), folder / "vol.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b truncated")
    caplog.set_level(logging.WARNING)
    (folder / "empty.nii").write_bytes(b"")
    items, skipped = segmentation_inference_datalist(folder)
    assert sorted(Path(d["image"]).name for d in items) == ["ct", "vol.nii.gz"]
    assert sorted(Path(s["filename"]).name for s in skipped) == ["broken.nii.gz", "empty.nii"]
    assert all("cannot be read by NibabelReader" in s["reason"] and "\n" not in s["reason"] for s in skipped)
    assert any("broken.nii.gz" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="no readable"):
        segmentation_inference_datalist(folder / "broken.nii.gz")


# ---- federation ----------------------------------------------------------------------------------------


def test_cross_modality_federation(tmp_path):
    fed = build_segmentation_federation("cross_modality_hard", 8, image_size=SIZE, samples_per_client=10)
    assert [c.name for c in fed.clients] == [f"site-{i}" for i in range(1, 9)]
    assert [c.modality for c in fed.clients] == [MODALITIES[i % 7] for i in range(8)]
    assert fed.num_classes == len(TISSUES)
    site = fed.client("site-3")
    assert [site.num_samples(s) for s in ("train", "val", "test")] == [6, 2, 2]
    assert "| site-3 | MR-T2" in fed.summary()
    site.save_npz(tmp_path / "site.npz")
    _check_items(load_segmentation_split(tmp_path / "site.npz", "train", image_size=SIZE), 1, (SIZE, SIZE))
    with pytest.raises(KeyError):
        fed.client("site-99")


def test_iid_federation_and_errors():
    fed = build_segmentation_federation("iid", 2, image_size=SIZE, samples_per_client=14, seed=1)
    assert {c.modality for c in fed.clients} == {"mixed"}
    assert fed.client("site-1").splits["train"][0].shape[1:] == (1, SIZE, SIZE)
    default = build_segmentation_federation("cross_modality_hard", 1, image_size=SIZE)
    assert sum(default.clients[0].num_samples(s) for s in ("train", "val", "test")) == 160
    with pytest.raises(ValueError, match="scenario"):
        build_segmentation_federation("label_skew", 2)
    with pytest.raises(ValueError, match="data_dir"):
        build_segmentation_federation("iid", 2, data_dir="/data/Task01")
