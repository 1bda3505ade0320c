"""The omnifm_super_resolution bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``: the
bundle folder is only read. Tiny settings (32 x 32 HR, 20 phantom images, one epoch) keep it fast.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata
from PIL import Image

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "omnifm_super_resolution"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
SCHEMA = str(BUNDLE.parent / "schema" / "bundle_metadata_schema.json")
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


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the bundle tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    root = tmp_path_factory.mktemp("sr_bundle")
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
        ids_present = all(k in workflow.parser for k in FEDERATED_IDS)
        shapes = {np.asarray(d["image"]).shape for d in workflow.parser.get_parsed_content("train#dataset#data")}
        workflow.run()
        metrics = dict(workflow.parser.get_parsed_content("validate#evaluator").state.metrics)
        workflow.finalize()
    return {
        "root": root,
        "ckpt": root / "models" / "model.pt",
        "missing": missing,
        "ids": ids_present,
        "shapes": shapes,
        "metrics": metrics,
    }


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    verify_metadata(meta_file=META, filepath=SCHEMA)
    meta = json.loads(Path(META).read_text())
    assert meta["version"] in meta["changelog"]
    fmt = meta["network_data_format"]
    train = json.loads(Path(TRAIN).read_text())
    assert fmt["inputs"]["image"]["spatial_shape"] == [train["image_size"] // train["scale"]] * 2
    assert fmt["outputs"]["pred"]["spatial_shape"] == [train["image_size"]] * 2
    assert fmt["inputs"]["image"]["num_channels"] == fmt["outputs"]["pred"]["num_channels"] == train["in_channels"]


def test_train_defines_the_federated_ids_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert trained["ids"]
    assert trained["shapes"] == {(3, 16, 16)}  # every LR training image has one shape
    assert trained["ckpt"].is_file()
    assert list((trained["root"] / "eval").glob("events.out.tfevents.*"))
    assert set(trained["metrics"]) == {"val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim"}
    assert all(np.isfinite(v) for v in trained["metrics"].values())
    net = _eager_network(trained["ckpt"])
    with torch.no_grad():
        assert net(torch.rand(2, 3, 16, 16)).shape == (2, 3, 32, 32)


def test_evaluate_loads_the_checkpoint_and_saves_test_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    before = _sha256(trained["ckpt"])
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
    assert set(rows) == {"val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim"}
    assert 10.0 < float(rows["val_psnr"]) < 60.0 and 0.0 < float(rows["val_ssim"]) <= 1.0
    assert _sha256(trained["ckpt"]) == before


def test_inference_network_matches_training():
    train, infer = json.loads(Path(TRAIN).read_text()), json.loads(Path(INFERENCE).read_text())
    for key in ("network_def", "image_size", "scale", "in_channels", "spectral", "prompt", "device"):
        assert infer[key] == train[key], key


def _run_inference(trained, input_path: Path, output_dir: Path, **kwargs) -> None:
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(output_dir),
        input_dir=str(input_path),
        **kwargs,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()


def test_inference_on_a_folder_writes_png_and_nifti(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
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
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    try:  # the bundle's logging.conf must load; put pytest's logging back afterwards
        _run_inference(trained, folder, out, logging_file=str(CONFIGS / "logging.conf"))
    finally:
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)

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

    net = _eager_network(trained["ckpt"])  # the written image is the trained network's output
    lr = np.asarray(Image.open(folder / "gray.png"), dtype=np.float32) / 255.0
    with torch.no_grad():
        expected = net(torch.as_tensor(lr)[None, None].repeat(1, 3, 1, 1)).clamp(0, 1)[0].mean(0).numpy()
    assert np.abs(gray.astype(np.float32) - np.round(expected * 255)).max() <= 1


def test_inference_without_readable_input_says_so(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.png").write_bytes(b"nothing")
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the config expression's error
        _run_inference(trained, tmp_path / "empty", tmp_path / "out", logging_file=False)
    assert "no readable image" in str(error.value.__cause__)


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
            **{"_meta_#network_data_format#outputs#pred#num_channels": 1},
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
        input_shape=[1, 3, 16, 16],
    )
    scripted, meta, extra = load_net_with_metadata(str(ts_file), more_extra_files=("inference.json",))
    assert meta["version"] == json.loads(Path(META).read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    image = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(image).numpy(), _eager_network(trained["ckpt"])(image).numpy(), atol=1e-5)
