"""A classification checkpoint knows how it was trained: evaluate, inference and export read models/metadata.json.

One tiny training run on a two-class image folder (16 x 16 grey PNGs, one epoch): without the record, inference
needed ``--train_dataset_dir`` (else a raw size-mismatch error) and ran silently at whatever ``--image_size``
was given.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_checks import Bundle, no_network, run_evaluation, run_inference, train_tiny
from monai.bundle import ckpt_export, verify_metadata
from monai.data import load_net_with_metadata
from PIL import Image

from omnifm_monai.errors import SiteDataError, root_cause

BUNDLE = Bundle("omnifm_classification")
SIZE, CLASSES = 16, ("benign", "malignant")


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 128, (20, 20)) + 100 * c
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classification_record")
    data = _folder(root / "data")
    settings = {"dataset_dir": str(data), "image_size": SIZE, "in_channels": 1, "batch_size": 4}
    return {**train_tiny(BUNDLE, root, settings, progress_bar=False), "data": data}


def test_training_writes_the_record_next_to_the_checkpoint(trained):
    meta = json.loads((trained["ckpt"].parent / "metadata.json").read_text())
    assert meta["training"]["config"] == {
        "class_names": list(CLASSES), "num_classes": 2, "image_size": SIZE, "in_channels": 1,
        "spectral": True, "prompt": True,
    }  # fmt: skip
    assert meta["training"]["task"] == "classification" and meta["training"]["strategy"] == "centralised"
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 1 and image["spatial_shape"] == [SIZE, SIZE]
    verify_metadata(meta_file=str(trained["ckpt"].parent / "metadata.json"), filepath=BUNDLE.schema)  # still valid


def test_inference_takes_classes_size_and_channels_from_the_checkpoint(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    image = trained["data"] / "test" / "malignant" / "0.png"
    run_inference(BUNDLE, trained["ckpt"], tmp_path / "out", logging_file=False, input_dir=str(image))
    with (tmp_path / "out" / "predictions.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert set(row) == {"file", "class_id", "class_name", "prob_benign", "prob_malignant"}


@pytest.mark.parametrize(
    "override, named",
    [({"image_size": 64}, "image_size=64 (trained with 16)"), ({"in_channels": 3}, "in_channels=3 (trained with 1)")],
)
def test_inference_refuses_a_conflicting_option_in_one_line(trained, tmp_path, monkeypatch, override, named):
    monkeypatch.chdir(tmp_path)
    image = trained["data"] / "test" / "benign" / "0.png"
    with pytest.raises(RuntimeError) as error:  # MONAI's wrapper; `python -m monai.bundle` prints only the cause
        run_inference(BUNDLE, trained["ckpt"], tmp_path / "out", logging_file=False, input_dir=str(image), **override)
    cause = root_cause(error.value)
    assert isinstance(cause, SiteDataError) and named in str(cause) and "\n" not in str(cause)


def test_a_checkpoint_copied_without_its_record_is_refused_in_one_line(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bare").mkdir()
    shutil.copy(trained["ckpt"], tmp_path / "bare" / "model.pt")  # metadata.json left behind
    image = trained["data"] / "test" / "benign" / "0.png"
    with pytest.raises(RuntimeError) as error:  # the bundle's defaults: 6 phantom classes, 3 channels
        run_inference(
            BUNDLE, tmp_path / "bare" / "model.pt", tmp_path / "out", input_dir=str(image), logging_file=False
        )
    cause = root_cause(error.value)
    assert isinstance(cause, SiteDataError) and "does not fit this config's network" in str(cause)
    assert "--train_dataset_dir" in str(cause) and "\n" not in str(cause)


def test_evaluate_uses_the_recorded_size(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {"dataset_dir": str(trained["data"]), "progress_bar": False}  # no image_size, no in_channels
    split, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", settings)
    assert split == "test" and 0.0 <= float(rows["val_accuracy"]) <= 1.0


def test_ckpt_export_with_the_record_carries_the_class_count(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(trained["ckpt"]),
        meta_file=str(trained["ckpt"].parent / "metadata.json"),
        config_file=BUNDLE.inference,
        bundle_root=str(BUNDLE.root),
        ckpt_dir=str(trained["ckpt"].parent),
        use_trace=True,
        input_shape=[1, 1, SIZE, SIZE],
    )
    _, meta, _ = load_net_with_metadata(str(tmp_path / "model.ts"))
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    assert meta["training"]["config"]["class_names"] == list(CLASSES)
