"""The omnifm_fusion bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``: the
bundle folder is only read. Tiny settings (32 x 32 pairs, 20 phantom pairs, one epoch).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
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
from PIL import Image

from omnifm_monai.data.fusion import fusion_inference_datalist

BUNDLE = Bundle("omnifm_fusion")
TINY = {"image_size": 32, "num_samples": 20}
REQUIRED_IDS = (
    "dataset_dir image_size seed ckpt_dir output_dir val_interval progress_bar spectral prompt in_channels "
    "network_def network loss optimizer train#trainer validate#evaluator"
).split()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    return train_tiny(
        BUNDLE,
        tmp_path_factory.mktemp("fusion_bundle"),
        TINY,
        progress_bar=False,
        before_run=lambda workflow: {"ids": {k: k in workflow.parser for k in REQUIRED_IDS}},
    )


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    meta = verify_metadata_offline(BUNDLE)
    formats = meta["network_data_format"]
    assert formats["inputs"]["image"]["num_channels"] == 2 and formats["outputs"]["pred"]["num_channels"] == 1


def test_train_defines_the_pipeline_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert trained["ckpt"].is_file()
    meta = assert_training_record(trained, "fusion", {"image_size": 32, "in_channels": 2})
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert list((trained["root"] / "eval" / "tensorboard").glob("*/events.out.tfevents.*"))  # one folder per run
    with torch.no_grad():
        fused = eager_network(BUNDLE, trained["ckpt"])(torch.rand(2, 2, 32, 32))
    assert fused.shape == (2, 1, 32, 32) and 0.0 <= float(fused.min()) and float(fused.max()) <= 1.0


def test_evaluate_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    split, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", TINY)
    assert split == "test"
    assert set(rows) == {"val_qabf", "val_ssim", "val_average_qabf", "val_max_qabf"}
    assert all(-1.0 <= float(v) <= 1.0 for v in rows.values())


def test_inference_network_matches_training():
    assert_inference_matches_training(
        BUNDLE, ("network_def", "image_size", "in_channels", "spectral", "prompt", "device")
    )


def _infer(trained, input_a: Path, input_b: Path, output_dir: Path) -> None:
    run_inference(
        BUNDLE,
        trained["ckpt"],
        output_dir,
        logging_file=False,
        input_a=str(input_a),
        input_b=str(input_b),
        image_size=TINY["image_size"],
    )


def test_inference_writes_a_fused_nifti_with_the_first_affine(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    nib.save(nib.Nifti1Image(rng.random((40, 48, 3)).astype(np.float32), affine), tmp_path / "mr.nii.gz")
    nib.save(nib.Nifti1Image(rng.random((40, 48, 3)).astype(np.float32), np.eye(4)), tmp_path / "pet.nii.gz")
    _infer(trained, tmp_path / "mr.nii.gz", tmp_path / "pet.nii.gz", tmp_path / "out")
    fused = nib.load(tmp_path / "out" / "mr_fused.nii.gz")
    assert fused.shape == (40, 48)
    np.testing.assert_allclose(fused.affine[:, :2], affine[:, :2])
    np.testing.assert_allclose(fused.affine[:3, 3], affine[:3, 3] + [0.0, 0.0, 2.0])  # the middle slice
    data = fused.get_fdata()
    assert 0.0 <= data.min() and data.max() <= 1.0
    item = fusion_inference_datalist(tmp_path / "mr.nii.gz", tmp_path / "pet.nii.gz", image_size=32)[0]
    with torch.no_grad():  # what was written is the trained network's output, resized back
        expected = eager_network(BUNDLE, trained["ckpt"])(torch.as_tensor(item["image"])[None])
    back = torch.nn.functional.interpolate(expected, size=(40, 48), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(data, back[0, 0].numpy(), atol=1e-5)


def test_inference_on_png_pair(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    _infer(trained, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "out")
    assert np.asarray(Image.open(tmp_path / "out" / "a_fused.png")).shape == (30, 30)


@pytest.mark.parametrize("config", [BUNDLE.train, BUNDLE.inference], ids=["train", "inference"])
def test_verify_net_in_out(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_net_in_out(BUNDLE, config, wrong_channels=2)


def test_ckpt_export_gives_the_eager_outputs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_ckpt_export(BUNDLE, trained["ckpt"], tmp_path / "model.ts", [1, 2, 32, 32], [3, 2, 32, 32], atol=1e-5)
