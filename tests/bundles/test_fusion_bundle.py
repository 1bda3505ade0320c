"""The omnifm_fusion bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``: the
bundle folder is only read. Tiny settings (32 x 32 pairs, 20 phantom pairs, one epoch).
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
from PIL import Image

from omnifm_monai.data.fusion import fusion_inference_datalist

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "omnifm_fusion"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
SCHEMA = str(BUNDLE.parent / "schema" / "bundle_metadata_schema.json")
TINY = {"image_size": 32, "num_samples": 20}
REQUIRED_IDS = (
    "dataset_dir image_size seed ckpt_dir output_dir val_interval progress_bar spectral prompt in_channels "
    "network_def network loss optimizer train#trainer validate#evaluator"
).split()


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
    root = tmp_path_factory.mktemp("fusion_bundle")
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
        ids = {k: k in workflow.parser for k in REQUIRED_IDS}
        workflow.run()
        workflow.finalize()
    return {"root": root, "ckpt": root / "models" / "model.pt", "missing": missing, "ids": ids}


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    verify_metadata(meta_file=META, filepath=SCHEMA)
    meta = json.loads(Path(META).read_text())
    assert meta["version"] in meta["changelog"]
    formats = meta["network_data_format"]
    assert formats["inputs"]["image"]["num_channels"] == 2 and formats["outputs"]["pred"]["num_channels"] == 1


def test_train_defines_the_pipeline_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert trained["ckpt"].is_file()
    assert list((trained["root"] / "eval").glob("events.out.tfevents.*"))
    with torch.no_grad():
        fused = _eager_network(trained["ckpt"])(torch.rand(2, 2, 32, 32))
    assert fused.shape == (2, 1, 32, 32) and 0.0 <= float(fused.min()) and float(fused.max()) <= 1.0


def test_evaluate_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
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
    assert workflow.parser.get_parsed_content("validate#split") == "test"
    workflow.run()
    workflow.finalize()
    rows = dict(csv.reader((tmp_path / "eval" / "metrics.csv").open(), delimiter=","))
    assert set(rows) == {"val_qabf", "val_ssim", "val_average_qabf", "val_max_qabf"}
    assert all(-1.0 <= float(v) <= 1.0 for v in rows.values())


def test_inference_network_matches_training():
    train, infer = json.loads(Path(TRAIN).read_text()), json.loads(Path(INFERENCE).read_text())
    for key in ("network_def", "image_size", "in_channels", "spectral", "prompt", "device"):
        assert infer[key] == train[key], key


def _infer(trained, input_a: Path, input_b: Path, output_dir: Path) -> None:
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        workflow_type="infer",
        logging_file=False,
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(output_dir),
        input_a=str(input_a),
        input_b=str(input_b),
        image_size=TINY["image_size"],
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()


def test_inference_writes_a_fused_nifti_with_the_first_affine(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
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
        expected = _eager_network(trained["ckpt"])(torch.as_tensor(item["image"])[None])
    back = torch.nn.functional.interpolate(expected, size=(40, 48), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(data, back[0, 0].numpy(), atol=1e-5)


def test_inference_on_png_pair(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    _infer(trained, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "out")
    assert np.asarray(Image.open(tmp_path / "out" / "a_fused.png")).shape == (30, 30)


@pytest.mark.parametrize("config", [TRAIN, INFERENCE], ids=["train", "inference"])
def test_verify_net_in_out(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=config, device="cpu", bundle_root=str(BUNDLE))
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=META,
            config_file=config,
            device="cpu",
            bundle_root=str(BUNDLE),
            **{"_meta_#network_data_format#outputs#pred#num_channels": 2},
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
        input_shape=[1, 2, 32, 32],
    )
    traced, meta, extra = load_net_with_metadata(str(ts_file), more_extra_files=("inference.json",))
    assert meta["version"] == json.loads(Path(META).read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    sources = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(traced(sources).numpy(), _eager_network(trained["ckpt"])(sources).numpy(), atol=1e-5)
