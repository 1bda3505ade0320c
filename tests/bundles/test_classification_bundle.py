"""The omnifm_classification bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes checkpoints and outputs
under ``tmp_path``: the bundle folder is only read. Tiny settings (32 x 32 images, 64 phantom images per
split, one epoch) keep the file to well under a minute and a half on two cores.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
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
from monai.bundle import ConfigWorkflow, verify_metadata
from PIL import Image
from pydicom.data import get_testdata_file

from omnifm_monai.data.classification import class_names_for
from omnifm_monai.data.image_io import load_image_file

BUNDLE = Bundle("omnifm_classification")
TINY = {"image_size": 32, "num_samples": 64}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    return train_tiny(BUNDLE, tmp_path_factory.mktemp("classification_bundle"), TINY)


# ---- metadata -----------------------------------------------------------------------------------------


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    meta = verify_metadata_offline(BUNDLE)
    assert "omnifm-monai" in meta["required_packages_version"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(class_names_for(""))
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 3 and len(image["spatial_shape"]) == 2

    del meta["authors"]  # the schema does reject incomplete metadata
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="authors"):
        verify_metadata(meta_file=str(broken), filepath=BUNDLE.schema)


# ---- train, evaluate ----------------------------------------------------------------------------------


def test_train_has_properties_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert trained["ckpt"].is_file()
    meta = assert_training_record(
        trained, "classification", {"class_names": list(class_names_for("")), "image_size": 32}
    )
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(class_names_for(""))
    assert list((trained["root"] / "eval" / "tensorboard").glob("*/events.out.tfevents.*"))  # one folder per run
    net = eager_network(BUNDLE, trained["ckpt"])  # the checkpoint loads into the bundle's network_def
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, len(class_names_for("")))


def test_evaluate_loads_the_checkpoint_and_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    before = sha256(trained["ckpt"])
    split, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", TINY)
    assert split == "test"
    assert set(rows) == {"val_accuracy", "val_auc", "val_f1"}
    assert all(0.0 <= float(v) <= 1.0 for v in rows.values())
    assert sha256(trained["ckpt"]) == before  # evaluation never overwrites the model


def test_small_site_trains_without_a_last_batch_of_one(tmp_path):
    """17 training images, batch 8: the last batch of one is dropped (BatchNorm raises on it in training)."""
    settings = {"image_size": 16, "num_samples": 17, "batch_size": 8}
    result = train_tiny(BUNDLE, tmp_path, settings, after_run=lambda w: {"iterations": w.trainer.state.iteration})
    assert result["iterations"] == 2  # 8 + 8, the 17th image left out of this epoch


def test_train_from_a_csv_with_the_disk_cache(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = ["image,label"]
    for i in range(15):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{['benign', 'malignant'][i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    settings = {"image_size": 16, "batch_size": 4, "dataset_dir": str(tmp_path / "labels.csv"), "dataset_cache": "disk"}
    result = train_tiny(BUNDLE, tmp_path, settings, after_run=lambda w: {"iterations": w.trainer.state.iteration})
    assert result["iterations"] == 2  # 9 training images (0.6 of 15), batches of 4
    # beside models/: the 8 training images of the two batches (the 9th was dropped this epoch) and the 3 of val
    assert len(list((tmp_path / "cache" / "images_16px_3ch").glob("*.pt"))) == 8 + 3
    assert result["ckpt"].is_file()


# ---- inference ----------------------------------------------------------------------------------------


def _input_folder(root: Path) -> Path:
    """A PNG, a NIfTI volume and a DICOM in nested folders, plus a corrupt PNG and a text file."""
    rng = np.random.default_rng(0)
    (root / "site" / "ct").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "site" / "photo.png")
    volume = rng.random((24, 24, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "site" / "ct" / "volume.nii.gz")
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), root / "site" / "ct" / "slice.dcm")
    (root / "site" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a PNG")
    (root / "site" / "notes.txt").write_text("not an image")
    return root / "site"


def _run_inference(trained, input_path: Path, output_dir: Path, **kwargs) -> ConfigWorkflow:
    return run_inference(
        BUNDLE, trained["ckpt"], output_dir, input_dir=str(input_path), image_size=TINY["image_size"], **kwargs
    )


def test_inference_network_matches_training():
    """inference.json is standalone: its network (and what feeds it) must stay the one train.json trains."""
    assert_inference_matches_training(
        BUNDLE, ("network_def", "image_size", "in_channels", "spectral", "prompt", "device")
    )


def test_inference_on_a_folder_skips_unreadable_files(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    folder = _input_folder(tmp_path / "input")
    out = tmp_path / "predictions"
    with bundle_logging(BUNDLE) as logging_file:
        _run_inference(trained, folder, out, logging_file=logging_file)

    class_names = list(class_names_for(""))
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    readable = ["photo.png", "ct/slice.dcm", "ct/volume.nii.gz"]
    assert sorted(Path(r["file"]).relative_to(folder).as_posix() for r in rows) == sorted(readable)
    net = eager_network(BUNDLE, trained["ckpt"])
    for row in rows:
        probs = np.array([float(row[f"prob_{n}"]) for n in class_names])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert int(row["class_id"]) == int(probs.argmax())
        assert row["class_name"] == class_names[int(row["class_id"])]
        image = torch.as_tensor(load_image_file(row["file"], image_size=32))[None]
        with torch.no_grad():  # the written probabilities are the trained network's
            expected = torch.softmax(net(image), dim=1)[0].numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-5)

    report = json.loads((out / "predictions.json").read_text())
    assert report["class_names"] == class_names and len(report["predictions"]) == 3
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert "pil reader" in skipped["broken.png"]
    with (out / "skipped.csv").open(newline="") as f:
        assert sorted(Path(r["file"]).name for r in csv.DictReader(f)) == ["broken.png", "notes.txt"]


def test_inference_on_a_single_file(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dicom = get_testdata_file("CT_small.dcm", download=False)
    _run_inference(trained, Path(dicom), tmp_path / "out", logging_file=False)
    with (tmp_path / "out" / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in rows] == ["CT_small.dcm"]


def test_inference_without_readable_input_says_so(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.dcm").write_bytes(b"nothing")
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the config expression's error
        _run_inference(trained, tmp_path / "empty", tmp_path / "out", logging_file=False)
    assert isinstance(error.value.__cause__, ValueError)
    assert "no readable image" in str(error.value.__cause__)


# ---- verify_net_in_out, ckpt_export -------------------------------------------------------------------


@pytest.mark.parametrize("config", [BUNDLE.train, BUNDLE.inference], ids=["train", "inference"])
def test_verify_net_in_out(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_net_in_out(BUNDLE, config, wrong_channels=5)


def test_ckpt_export_gives_the_eager_outputs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # another batch size than the trace's
    check_ckpt_export(BUNDLE, trained["ckpt"], tmp_path / "model.ts", [1, 3, 32, 32], [3, 3, 32, 32], atol=1e-5)
