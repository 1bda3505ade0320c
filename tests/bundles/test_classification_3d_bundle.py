"""The classification bundle's 3D option: train_3d.json / inference_3d.json merged over the 2D configs.

Tiny synthetic volumes (NIfTI files and DICOM series folders, one with a stray file) at image_size 16,
one epoch: train, evaluate on the test split and classify a folder of volumes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bundle_checks import Bundle, no_network
from monai.bundle import ConfigWorkflow
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from omnifm_monai.data.volume_classification import load_volume, load_volume_classification_split

BUNDLE = Bundle("omnifm_classification")
SIZE = 16
TRAIN_3D = str(BUNDLE.configs / "train_3d.json")
INFERENCE_3D = str(BUNDLE.configs / "inference_3d.json")


def _series(folder: Path, seed: int, num_slices: int = 5) -> None:
    """A CT series of ``num_slices`` 12 x 12 slices (``CT_small.dcm`` headers, random pixels)."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    uid, rng = generate_uid(), np.random.default_rng(seed)
    for i in range(num_slices):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), i + 1
        ds.ImagePositionPatient, ds.SliceThickness = [0.0, 0.0, 3.0 * i], 3.0
        ds.Rows = ds.Columns = 12
        ds.PixelData = rng.integers(0, 1000, (12, 12), dtype=np.int16).tobytes()
        ds.save_as(folder / f"IM{i:04d}")  # extension-less, as PACS exports often are


def _volumes(root: Path) -> Path:
    """``<root>/<split>/{bright,dark}/``: NIfTI volumes and DICOM series folders (one with a stray file)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c, name in enumerate(("bright", "dark")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                data = rng.random((10, 12, 8)).astype(np.float32) * (1.0 + 4.0 * c)
                nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), folder / f"vol{i}.nii.gz")
            _series(folder / "patient" / "series1", seed=c)
        (root / split / "dark" / "patient" / "series1" / "README.txt").write_text("exported\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classification_3d")
    data = _volumes(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        no_network(mp)
        workflow = ConfigWorkflow(
            config_file=[BUNDLE.train, TRAIN_3D],
            logging_file=False,
            workflow_type="train",
            bundle_root=str(BUNDLE.root),
            ckpt_dir=str(root / "models"),
            output_dir=str(root / "eval"),
            dataset_dir=str(data),
            image_size=SIZE,
            epochs=1,
            progress_bar=False,
        )
        workflow.initialize()
        missing = workflow.check_properties()
        net = workflow.parser.get_parsed_content("network_def")
        workflow.run()
        workflow.finalize()
    return {"root": root, "data": data, "missing": missing, "net": net}


def test_volume_datalist_reads_nifti_and_series_and_skips_the_stray(tmp_path, caplog):
    data = _volumes(tmp_path / "data")
    caplog.set_level(logging.WARNING)
    items = load_volume_classification_split(data, "train", image_size=SIZE, in_channels=1)
    assert len(items) == 6 and sorted(int(d["label"]) for d in items) == [0, 0, 0, 1, 1, 1]
    assert all(d["image"].shape == (1, SIZE, SIZE, SIZE) and d["image"].dtype == np.float32 for d in items)
    assert any("README.txt" in r.getMessage() for r in caplog.records)  # named, and the series still read
    series = load_volume(data / "train" / "dark" / "patient" / "series1", image_size=SIZE, in_channels=3)
    assert series.shape == (3, SIZE, SIZE, SIZE) and 0.0 <= series.min() and series.max() <= 1.0
    with pytest.raises(ValueError, match="not a volume"):
        load_volume(get_testdata_file("CT_small.dcm", download=False), image_size=SIZE)
    phantom = load_volume_classification_split("", "val", image_size=SIZE, num_samples=3)
    assert len(phantom) == 3 and phantom[0]["image"].shape == (1, SIZE, SIZE, SIZE)


def test_train_3d_uses_the_3d_network_and_writes_a_checkpoint(trained):
    assert trained["missing"] == []
    assert trained["net"].spatial_dims == 3 and trained["net"].in_channels == 1
    assert (trained["root"] / "models" / "model.pt").is_file()


def test_evaluate_and_inference_with_the_3d_overlays(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    common = {"bundle_root": str(BUNDLE.root), "ckpt_dir": str(trained["root"] / "models"), "image_size": SIZE}
    evaluation = ConfigWorkflow(
        config_file=[BUNDLE.train, BUNDLE.evaluate, TRAIN_3D],
        logging_file=False,
        workflow_type=None,
        output_dir=str(tmp_path / "metrics"),
        dataset_dir=str(trained["data"]),
        **common,
    )
    evaluation.initialize()
    assert evaluation.parser.get_parsed_content("validate#split") == "test"
    evaluation.run()
    evaluation.finalize()
    with (tmp_path / "metrics" / "metrics.csv").open() as f:
        assert 0.0 <= float(dict(csv.reader(f))["val_accuracy"]) <= 1.0

    inputs = trained["data"] / "test"
    inference = ConfigWorkflow(
        config_file=[BUNDLE.inference, INFERENCE_3D],
        logging_file=False,
        workflow_type="infer",
        output_dir=str(tmp_path / "out"),
        input_dir=str(inputs),
        train_dataset_dir=str(trained["data"]),
        **common,
    )
    inference.initialize()
    inference.run()
    inference.finalize()
    with (tmp_path / "out" / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    found = sorted(Path(r["file"]).relative_to(inputs).as_posix() for r in rows)
    expected = [f"{c}/{v}" for c in ("bright", "dark") for v in ("patient/series1", "vol0.nii.gz", "vol1.nii.gz")]
    assert found == expected and {r["class_name"] for r in rows} <= {"bright", "dark"}
