"""The omnifm_segmentation bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``; the bundle
folder is only read. Tiny settings (32 x 32 slices, 28 phantom images, one epoch) keep it short.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_checks import (
    Bundle,
    assert_inference_matches_training,
    assert_training_record,
    check_ckpt_export,
    check_net_in_out,
    eager_network,
    no_network,
    run_evaluation,
    run_inference,
    train_tiny,
    verify_metadata_offline,
)
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from omnifm_monai.data.phantom import TISSUES

BUNDLE = Bundle("omnifm_segmentation")
TINY = {"image_size": 32, "num_samples": 28}
FEDERATED_IDS = (
    "dataset_dir", "image_size", "seed", "ckpt_dir", "output_dir", "val_interval", "progress_bar", "spectral",
    "prompt", "num_classes", "in_channels", "network_def", "network", "loss", "optimizer", "train#trainer",
    "validate#evaluator",
)  # fmt: skip


def _before_run(workflow) -> dict:
    return {
        "ids": {i: workflow.parser.get(i) is not None for i in FEDERATED_IDS},
        "images": workflow.parser.get_parsed_content("train#dataset").data,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    root = tmp_path_factory.mktemp("segmentation_bundle")
    return train_tiny(BUNDLE, root, TINY, progress_bar=False, before_run=_before_run)


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    meta = verify_metadata_offline(BUNDLE)
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(TISSUES)
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1


def test_train_defines_the_federated_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert len({d["image"].shape for d in trained["images"]}) == 1  # one shape: the spectral centroids stack them
    assert trained["ckpt"].is_file()
    meta = assert_training_record(trained, "segmentation", {"class_names": list(TISSUES), "image_size": 32})
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(TISSUES)
    assert list((trained["root"] / "eval" / "tensorboard").glob("*/events.out.tfevents.*"))  # one folder per run
    with torch.no_grad():
        assert eager_network(BUNDLE, trained["ckpt"])(torch.rand(2, 1, 32, 32)).shape == (2, len(TISSUES), 32, 32)


def test_evaluate_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", TINY)
    assert set(rows) == {"val_mean_dice", "val_hd95"}
    assert 0.0 <= float(rows["val_mean_dice"]) <= 1.0 and 0.0 <= float(rows["val_hd95"]) <= np.sqrt(2 * 32**2)


def test_inference_writes_masks_with_the_input_affine(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    affine = np.array([[-1.2, 0, 0, 10.0], [0, 1.1, 0, -5.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).random((40, 36, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), folder / "patient.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b truncated")
    run_inference(BUNDLE, trained["ckpt"], tmp_path / "out", logging_file=False, input_dir=str(folder), image_size=32)
    outputs = sorted((tmp_path / "out").rglob("*.nii.gz"))
    assert [p.name for p in outputs] == ["patient_seg.nii.gz"]
    mask = nib.load(outputs[0])
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    data = np.asarray(mask.dataobj)
    assert data.shape == volume.shape and data.min() >= 0 and data.max() < len(TISSUES)
    with (tmp_path / "out" / "skipped.csv").open() as f:
        skipped = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in skipped] == ["broken.nii.gz"]
    assert "cannot be read by NibabelReader" in skipped[0]["reason"]


def test_inference_on_a_dicom_series_with_a_stray_file(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    series = tmp_path / "in" / "ct"
    series.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    uid, rng = generate_uid(), np.random.default_rng(0)
    for i in range(4):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), i + 1
        ds.ImagePositionPatient, ds.Rows, ds.Columns = [0.0, 0.0, 2.0 * i], 24, 20
        ds.PixelData = rng.integers(0, 1000, (24, 20), dtype=np.int16).tobytes()
        ds.save_as(series / f"slice{i}.dcm")
    (series / "README.txt").write_text("a stray file: named in a warning and skipped, not fatal")
    run_inference(BUNDLE, trained["ckpt"], tmp_path / "out", logging_file=False, input_dir=str(series), image_size=32)
    outputs = sorted((tmp_path / "out").rglob("*.nii.gz"))  # in output_dir, not beside the series folder
    assert [p.name for p in outputs] == ["ct_seg.nii.gz"] and nib.load(outputs[0]).shape == (20, 24, 4)


def test_inference_network_matches_training():
    keys = ("network_def", "image_size", "in_channels", "spatial_dims", "spectral", "prompt", "device")
    assert_inference_matches_training(BUNDLE, keys)


def test_verify_net_in_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_net_in_out(BUNDLE, BUNDLE.inference)


def test_ckpt_export_gives_the_eager_outputs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_ckpt_export(BUNDLE, trained["ckpt"], tmp_path / "model.ts", [1, 1, 32, 32], [3, 1, 32, 32], atol=1e-4)
