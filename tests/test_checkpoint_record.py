"""The training record next to a checkpoint: written from the bundle's metadata, read back, conflicts refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omnifm_monai.checkpoint_record import (
    check_training_record,
    load_training_record,
    trained_value,
    write_training_record,
)
from omnifm_monai.errors import SiteDataError

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "omnifm_classification"


def _record(tmp_path) -> Path:
    ckpt_dir = tmp_path / "models"
    ckpt_dir.mkdir()
    (ckpt_dir / "model.pt").write_bytes(b"weights")
    write_training_record(
        ckpt_dir,
        BUNDLE,
        task="classification",
        config={"class_names": ("a", "b"), "num_classes": 2, "image_size": 32, "in_channels": 1},
        strategy="fedavg",
        network_data_format={"inputs": {"image": {"num_channels": 1}}, "outputs": {"pred": {"num_channels": 2}}},
    )
    return ckpt_dir


def test_record_is_the_bundle_metadata_updated_to_what_was_trained(tmp_path):
    meta = json.loads((_record(tmp_path) / "metadata.json").read_text())
    bundle_meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] == bundle_meta["version"] and meta["authors"] == bundle_meta["authors"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 1 and image["spatial_shape"] == [64, 64]  # merged, not replaced
    training = meta["training"]
    assert training["task"] == "classification" and training["strategy"] == "fedavg"
    assert training["bundle"] == "omnifm_classification" and training["bundle_version"] == bundle_meta["version"]
    assert training["config"]["class_names"] == ["a", "b"]


def test_trained_values_and_defaults(tmp_path):
    ckpt_dir = _record(tmp_path)
    assert trained_value(ckpt_dir, "image_size", 64) == 32
    assert trained_value(ckpt_dir, "class_names", ()) == ("a", "b")
    assert trained_value(ckpt_dir, "spectral", True) is True  # not recorded: the default
    assert trained_value(tmp_path / "elsewhere", "image_size", 64) == 64  # no record: the default
    assert load_training_record(tmp_path / "elsewhere") is None


def test_conflicts_are_refused_in_one_line(tmp_path):
    ckpt_dir = _record(tmp_path)
    assert check_training_record(ckpt_dir, image_size=32, class_names=("a", "b"), in_channels=None)
    with pytest.raises(SiteDataError) as error:
        check_training_record(ckpt_dir, image_size=64, class_names=["a", "b", "c"])
    message = str(error.value)
    assert "\n" not in message
    assert "image_size=64 (trained with 32)" in message and "class_names=['a', 'b', 'c']" in message
    with pytest.raises(SiteDataError, match="no checkpoint"):
        check_training_record(tmp_path / "elsewhere")
    (ckpt_dir / "metadata.json").write_text("{not json")
    with pytest.raises(SiteDataError, match="is not a training record"):
        trained_value(ckpt_dir, "image_size", 64)


def test_a_checkpoint_that_does_not_fit_the_network_is_refused_in_one_line(tmp_path):
    ckpt_dir = tmp_path / "models"
    ckpt_dir.mkdir()
    torch.save(torch.nn.Linear(4, 2).state_dict(), ckpt_dir / "model.pt")  # no record: trained elsewhere
    assert check_training_record(ckpt_dir, network=torch.nn.Linear(4, 2)) is None
    with pytest.raises(SiteDataError) as error:
        check_training_record(ckpt_dir, network=torch.nn.Linear(4, 6))
    assert "weight is (2, 4) in the checkpoint, (6, 4) here" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(SiteDataError, match="4 key.s. missing, e.g. 0.bias; 2 unexpected key.s., e.g. bias"):
        check_training_record(ckpt_dir, network=torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 2)))
    (ckpt_dir / "model.pt").write_bytes(b"truncated")
    with pytest.raises(SiteDataError, match="cannot be read as a checkpoint"):
        check_training_record(ckpt_dir, network=torch.nn.Linear(4, 2))
