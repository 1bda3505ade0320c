"""The omnifm_segmentation bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``; the bundle
folder is only read. Tiny settings (32 x 32 slices, 28 phantom images, one epoch) keep it short.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata

from omnifm_monai.data.phantom import TISSUES

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "omnifm_segmentation"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
SCHEMA = str(BUNDLE.parent / "schema" / "bundle_metadata_schema.json")
TINY = {"image_size": 32, "num_samples": 28}
FEDERATED_IDS = (
    "dataset_dir", "image_size", "seed", "ckpt_dir", "output_dir", "val_interval", "progress_bar", "spectral",
    "prompt", "num_classes", "in_channels", "network_def", "network", "loss", "optimizer", "train#trainer",
    "validate#evaluator",
)  # fmt: skip


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the bundle tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _eager_network(ckpt: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["bundle_root"] = str(BUNDLE)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return net.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    root = tmp_path_factory.mktemp("segmentation_bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _no_network(mp)
        workflow = ConfigWorkflow(
            config_file=TRAIN,
            logging_file=False,
            workflow_type="train",
            bundle_root=str(BUNDLE),
            ckpt_dir=str(root / "models"),
            output_dir=str(root / "eval"),
            epochs=1,
            progress_bar=False,
            **TINY,
        )
        workflow.initialize()
        missing = workflow.check_properties()
        ids = {i: workflow.parser.get(i) is not None for i in FEDERATED_IDS}
        images = workflow.parser.get_parsed_content("train#dataset").data
        workflow.run()
        workflow.finalize()
    return {"root": root, "ckpt": root / "models" / "model.pt", "missing": missing, "ids": ids, "images": images}


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    verify_metadata(meta_file=META, filepath=SCHEMA)
    meta = json.loads(Path(META).read_text())
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(TISSUES)
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1


def test_train_defines_the_federated_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert len({d["image"].shape for d in trained["images"]}) == 1  # one shape: the spectral centroids stack them
    assert trained["ckpt"].is_file()
    assert list((trained["root"] / "eval").glob("events.out.tfevents.*"))
    with torch.no_grad():
        assert _eager_network(trained["ckpt"])(torch.rand(2, 1, 32, 32)).shape == (2, len(TISSUES), 32, 32)


def test_evaluate_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workflow = ConfigWorkflow(
        config_file=[TRAIN, EVALUATE],
        logging_file=False,
        workflow_type=None,
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(tmp_path / "eval"),
        **TINY,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    rows = dict(csv.reader((tmp_path / "eval" / "metrics.csv").open(), delimiter=","))
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
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(tmp_path / "out"),
        input_dir=str(folder),
        image_size=32,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    outputs = sorted((tmp_path / "out").rglob("*.nii.gz"))
    assert [p.name for p in outputs] == ["patient_seg.nii.gz"]
    mask = nib.load(outputs[0])
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    data = np.asarray(mask.dataobj)
    assert data.shape == volume.shape and data.min() >= 0 and data.max() < len(TISSUES)


def test_inference_network_matches_training():
    train, infer = json.loads(Path(TRAIN).read_text()), json.loads(Path(INFERENCE).read_text())
    for key in ("network_def", "image_size", "in_channels", "spatial_dims", "spectral", "prompt", "device"):
        assert infer[key] == train[key], key


def test_verify_net_in_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verify_net_in_out(
        net_id="network_def", meta_file=META, config_file=INFERENCE, device="cpu", bundle_root=str(BUNDLE)
    )


def test_ckpt_export_gives_the_eager_outputs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ts_file = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(trained["ckpt"]),
        meta_file=META,
        config_file=INFERENCE,
        bundle_root=str(BUNDLE),
        use_trace=True,  # scripting fails: forward keeps its last tokens on self for the SPAlign loss
        input_shape=[1, 1, 32, 32],
    )
    traced, meta, extra = load_net_with_metadata(str(ts_file), more_extra_files=("inference.json",))
    assert "network_def" in json.loads(extra["inference.json"])
    image = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(traced(image).numpy(), _eager_network(trained["ckpt"])(image).numpy(), atol=1e-4)
