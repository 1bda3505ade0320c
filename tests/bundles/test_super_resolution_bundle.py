"""The omnifm_super_resolution bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``: the
bundle folder is only read. Tiny settings (32 x 32 HR, 20 phantom images, one epoch) keep it fast.
"""

from __future__ import annotations

import csv
import json
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
    bundle_logging,
    check_ckpt_export,
    check_net_in_out,
    eager_network,
    no_network,
    run_evaluation,
    run_inference,
    sha256,
    train_tiny,
    verify_metadata_offline,
)
from monai.transforms import LoadImage
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

BUNDLE = Bundle("omnifm_super_resolution")
TINY = {"image_size": 32, "num_samples": 20}
FEDERATED_IDS = (
    "dataset_dir",
    "image_size",
    "scale",
    "seed",
    "ckpt_dir",
    "output_dir",
    "val_interval",
    "progress_bar",
    "spectral",
    "prompt",
    "in_channels",
    "network_def",
    "network",
    "loss",
    "optimizer",
    "train#trainer",
    "validate#evaluator",
)


def _before_run(workflow) -> dict:
    return {
        "ids": all(k in workflow.parser for k in FEDERATED_IDS),
        "shapes": {np.asarray(d["image"]).shape for d in workflow.parser.get_parsed_content("train#dataset#data")},
    }


def _after_run(workflow) -> dict:
    return {"metrics": dict(workflow.parser.get_parsed_content("validate#evaluator").state.metrics)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    root = tmp_path_factory.mktemp("sr_bundle")
    return train_tiny(BUNDLE, root, TINY, progress_bar=False, before_run=_before_run, after_run=_after_run)


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    meta = verify_metadata_offline(BUNDLE)
    fmt = meta["network_data_format"]
    train = json.loads(Path(BUNDLE.train).read_text())
    assert fmt["inputs"]["image"]["spatial_shape"] == [train["image_size"] // train["scale"]] * 2
    assert fmt["outputs"]["pred"]["spatial_shape"] == [train["image_size"]] * 2
    assert fmt["inputs"]["image"]["num_channels"] == fmt["outputs"]["pred"]["num_channels"] == train["in_channels"]


def test_train_defines_the_federated_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert trained["ids"]
    assert trained["shapes"] == {(3, 16, 16)}  # every LR training image has one shape
    assert trained["ckpt"].is_file()
    meta = assert_training_record(trained, "super_resolution", {"image_size": 32, "scale": 2, "in_channels": 3})
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [16, 16]
    assert list((trained["root"] / "eval" / "tensorboard").glob("*/events.out.tfevents.*"))  # one folder per run
    assert set(trained["metrics"]) == {"val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim"}
    assert all(np.isfinite(v) for v in trained["metrics"].values())
    net = eager_network(BUNDLE, trained["ckpt"])
    with torch.no_grad():
        assert net(torch.rand(2, 3, 16, 16)).shape == (2, 3, 32, 32)


def test_evaluate_loads_the_checkpoint_and_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    before = sha256(trained["ckpt"])
    split, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", TINY)
    assert split == "test"
    assert set(rows) == {"val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim"}
    assert 10.0 < float(rows["val_psnr"]) < 60.0 and 0.0 < float(rows["val_ssim"]) <= 1.0
    assert sha256(trained["ckpt"]) == before


def test_inference_network_matches_training():
    keys = ("network_def", "image_size", "scale", "in_channels", "spectral", "prompt", "device")
    assert_inference_matches_training(BUNDLE, keys)


def _run_inference(trained, input_path: Path, output_dir: Path, **kwargs) -> None:
    run_inference(BUNDLE, trained["ckpt"], output_dir, input_dir=str(input_path), **kwargs)


def test_inference_on_a_folder_writes_png_and_nifti(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    rng = np.random.default_rng(0)
    folder = tmp_path / "input"
    (folder / "ct").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "gray.png")
    volume = rng.random((10, 14, 3)).astype(np.float32) * 500.0 - 100.0
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 2.0]
    nib.save(nib.Nifti1Image(volume, affine), folder / "ct" / "volume.nii.gz")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "sr"
    with bundle_logging(BUNDLE) as logging_file:
        _run_inference(trained, folder, out, logging_file=logging_file)

    rgb = np.asarray(Image.open(out / "rgb_sr.png"))
    gray = np.asarray(Image.open(out / "gray_sr.png"))
    assert rgb.shape == (24, 40, 3) and gray.shape == (32, 32)
    sr = nib.load(out / "volume_sr.nii.gz")
    assert sr.shape == (20, 28, 3)
    np.testing.assert_allclose(np.diag(sr.affine)[:3], [0.4, 0.45, 3.0])
    np.testing.assert_allclose(sr.affine[:3, 3], [10.0 - 0.2, -5.0 - 0.225, 2.0])  # centre of the first HR voxel
    data = sr.get_fdata()
    assert -100.5 <= data.min() and data.max() <= 400.5  # back in the input's intensity range
    with (out / "skipped.csv").open(newline="") as f:
        assert sorted(Path(r["file"]).name for r in csv.DictReader(f)) == ["broken.png", "notes.txt"]

    net = eager_network(BUNDLE, trained["ckpt"])  # the written image is the trained network's output
    lr = np.asarray(Image.open(folder / "gray.png"), dtype=np.float32) / 255.0
    with torch.no_grad():
        expected = net(torch.as_tensor(lr)[None, None].repeat(1, 3, 1, 1)).clamp(0, 1)[0].mean(0).numpy()
    assert np.abs(gray.astype(np.float32) - np.round(expected * 255)).max() <= 1


def _series(folder: Path, num_slices: int = 3) -> None:
    """``num_slices`` 12 x 12 slices of one CT series (``CT_small.dcm`` headers), 2 mm apart."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    uid, rng = generate_uid(), np.random.default_rng(0)
    for i in range(num_slices):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), i + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * i]
        ds.Rows = ds.Columns = 12
        ds.PixelData = rng.integers(0, 1000, (12, 12), dtype=np.int16).tobytes()
        ds.save_as(folder / f"slice{i}.dcm")


def test_inference_on_a_dicom_file_and_a_series_folder_writes_nifti(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    dicom = get_testdata_file("CT_small.dcm", download=False)
    out = tmp_path / "sr"
    _run_inference(trained, Path(dicom), out, logging_file=False)
    sr = nib.load(out / "CT_small_sr.nii.gz")
    spacing = float(pydicom.dcmread(dicom).PixelSpacing[0])
    assert sr.shape == (256, 256, 1)
    np.testing.assert_allclose(np.abs(np.diag(sr.affine)[:2]), [spacing / 2] * 2, rtol=1e-5)
    stored = LoadImage(reader="PydicomReader", image_only=True)(dicom)  # rescaled stored values (HU)
    assert float(stored.min()) - 0.5 <= sr.get_fdata().min() and sr.get_fdata().max() <= float(stored.max()) + 0.5

    folder = tmp_path / "input"
    _series(folder / "patient" / "series")
    (folder / "patient" / "series" / "README.txt").write_text("a stray file: named and skipped")
    _run_inference(trained, folder, tmp_path / "sr_series", logging_file=False)
    assert nib.load(tmp_path / "sr_series" / "series_sr.nii.gz").shape == (24, 24, 3)


def test_inference_without_readable_input_says_so(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.png").write_bytes(b"nothing")
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the config expression's error
        _run_inference(trained, tmp_path / "empty", tmp_path / "out", logging_file=False)
    assert "no readable image" in str(error.value.__cause__)


@pytest.mark.parametrize("config", [BUNDLE.train, BUNDLE.inference], ids=["train", "inference"])
def test_verify_net_in_out(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_net_in_out(BUNDLE, config, wrong_channels=1)


def test_ckpt_export_gives_the_eager_outputs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_ckpt_export(BUNDLE, trained["ckpt"], tmp_path / "model.ts", [1, 3, 16, 16], [3, 3, 16, 16], atol=1e-5)
