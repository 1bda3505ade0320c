"""The omnifm_classification bundle end to end: metadata, train, evaluate, inference, verify and export.

Every test runs from a temporary working directory (not the bundle) and writes checkpoints and outputs
under ``tmp_path``: the bundle folder is only read. Tiny settings (32 x 32 images, 64 phantom images per
split, one epoch) keep the file to well under a minute and a half on two cores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata
from PIL import Image
from pydicom.data import get_testdata_file

from omnifm_monai.data.classification import class_names_for, load_image_file

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "omnifm_classification"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
SCHEMA = str(BUNDLE.parent / "schema" / "bundle_metadata_schema.json")
TINY = {"image_size": 32, "num_samples": 64}


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the bundle tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _eager_network(ckpt: Path) -> torch.nn.Module:
    """The bundle's network_def with the trained weights, in eval mode."""
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["bundle_root"] = str(BUNDLE)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return net.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    root = tmp_path_factory.mktemp("classification_bundle")
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
            **TINY,
        )
        workflow.initialize()
        missing = workflow.check_properties()
        workflow.run()
        workflow.finalize()
    return {"root": root, "ckpt": root / "models" / "model.pt", "missing": missing}


# ---- metadata -----------------------------------------------------------------------------------------


def test_metadata_validates_offline_against_our_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    verify_metadata(meta_file=META, filepath=SCHEMA)  # the schema file exists: nothing is downloaded

    meta = json.loads(Path(META).read_text())
    assert meta["version"] in meta["changelog"]
    assert "omnifm-monai" in meta["required_packages_version"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(class_names_for(""))
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 3 and len(image["spatial_shape"]) == 2

    del meta["authors"]  # the schema does reject incomplete metadata
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="authors"):
        verify_metadata(meta_file=str(broken), filepath=SCHEMA)


# ---- train, evaluate ----------------------------------------------------------------------------------


def test_train_has_properties_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert trained["ckpt"].is_file()
    assert list((trained["root"] / "eval").glob("events.out.tfevents.*"))
    net = _eager_network(trained["ckpt"])  # the checkpoint loads into the bundle's network_def
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, len(class_names_for("")))


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
    assert set(rows) == {"val_accuracy", "val_auc", "val_f1"}
    assert all(0.0 <= float(v) <= 1.0 for v in rows.values())
    assert _sha256(trained["ckpt"]) == before  # evaluation never overwrites the model


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
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(output_dir),
        input_dir=str(input_path),
        image_size=TINY["image_size"],
        **kwargs,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


def test_inference_network_matches_training():
    """inference.json is standalone: its network (and what feeds it) must stay the one train.json trains."""
    train, infer = json.loads(Path(TRAIN).read_text()), json.loads(Path(INFERENCE).read_text())
    for key in ("network_def", "image_size", "in_channels", "spectral", "prompt", "device"):
        assert infer[key] == train[key], key


def test_inference_on_a_folder_skips_unreadable_files(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    folder = _input_folder(tmp_path / "input")
    out = tmp_path / "predictions"
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    try:  # the bundle's logging.conf must pass MONAI's checks; put pytest's logging back afterwards
        _run_inference(trained, folder, out, logging_file=str(CONFIGS / "logging.conf"))
    finally:
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)

    class_names = list(class_names_for(""))
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    readable = ["photo.png", "ct/slice.dcm", "ct/volume.nii.gz"]
    assert sorted(Path(r["file"]).relative_to(folder).as_posix() for r in rows) == sorted(readable)
    net = _eager_network(trained["ckpt"])
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


@pytest.mark.parametrize("config", [TRAIN, INFERENCE], ids=["train", "inference"])
def test_verify_net_in_out(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=config, device="cpu", bundle_root=str(BUNDLE))
    wrong = {"_meta_#network_data_format#outputs#pred#num_channels": 5}
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=META,
            config_file=config,
            device="cpu",
            bundle_root=str(BUNDLE),
            **wrong,
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
        input_shape=[1, 3, 32, 32],
    )
    scripted, meta, extra = load_net_with_metadata(str(ts_file), more_extra_files=("inference.json",))
    assert meta["version"] == json.loads(Path(META).read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    image = torch.rand(3, 3, 32, 32)  # another batch size than the trace's
    with torch.no_grad():
        np.testing.assert_allclose(scripted(image).numpy(), _eager_network(trained["ckpt"])(image).numpy(), atol=1e-5)
