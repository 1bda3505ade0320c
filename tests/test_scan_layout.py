"""``scan --task``: the scanner's verdict on every file is the task loader's own (same accepted, same rejected)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from omnifm_monai.data.classification import load_classification_split
from omnifm_monai.data.segmentation import load_segmentation_split
from omnifm_monai.scan import main, scan_folder
from omnifm_monai.scan_layout import check_layout

SPLITS = ("train", "val", "test")


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12), value, dtype=np.uint8)).save(path)


def _loader_verdict(caplog, load, root: Path) -> tuple[dict[str, int], set[str]]:
    """Items per split (0: the loader refuses the split) and the files it logged as skipped (relative to ``root``)."""
    counts = {}
    with caplog.at_level(logging.WARNING, logger="omnifm_monai.data"):
        for split in SPLITS:
            try:
                counts[split] = len(load(split))
            except ValueError:  # "no readable case in the split"
                counts[split] = 0
    skipped = set()
    for record in caplog.records:
        found = re.search(r"'([^']+)'", record.getMessage())
        if record.getMessage().startswith("Skipping") and found:
            skipped.add(Path(found.group(1)).relative_to(root).as_posix())
    return counts, skipped


@pytest.fixture
def classification_site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for split in SPLITS:
        for c, name in enumerate(("CT", "MR")):
            for i in range(2):
                _png(root / split / name / f"{i}.png", 60 + 100 * c + i)
    ct = get_testdata_file("CT_small.dcm", download=False)
    shutil.copy(ct, root / "train" / "CT" / "ct.dcm")  # a real DICOM file
    volume = np.random.default_rng(0).random((6, 6, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "train" / "MR" / "vol.nii.gz")  # 3D: its middle slice
    nib.save(nib.Nifti1Image(volume[..., None].repeat(2, -1), np.eye(4)), root / "train" / "MR" / "dwi.nii.gz")  # 4D
    good = (root / "val" / "CT" / "0.png").read_bytes()
    (root / "val" / "CT" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    (root / "test" / "MR" / "empty.dcm").write_bytes(b"")
    (root / "train" / "CT" / "notes.txt").write_text("stray")
    (root / "dataset.json").write_text(json.dumps({"name": "export"}))  # metadata, not an error
    return root


def test_classification_scan_and_loader_accept_the_same_files(classification_site, caplog):
    # Execute
    layout = check_layout(classification_site, "classification", in_channels=1)
    counts, skipped = _loader_verdict(
        caplog, lambda s: load_classification_split(classification_site, s, image_size=16, in_channels=1),
        classification_site,
    )  # fmt: skip
    # Assert: the same items per split and the same rejected files; every file is one or the other
    assert layout.splits == counts == {"train": 6, "val": 4, "test": 4}
    assert {path for path, _ in layout.rejected} == skipped
    assert skipped == {"train/CT/notes.txt", "train/MR/dwi.nii.gz", "val/CT/cut.png", "test/MR/empty.dcm"}
    assert layout.classes["train"] == {"CT": 3, "MR": 3} and layout.ok
    assert "train/CT/ct.dcm" in layout.accepted and "train/MR/vol.nii.gz" in layout.accepted


def test_the_inventory_flags_4d_nifti_and_keeps_metadata(classification_site):
    report = scan_folder(classification_site)
    kinds = {item.path: item.kind for item in report.items}
    assert kinds["dataset.json"] == "metadata" and not any(p.path == "dataset.json" for p in report.problems)
    warning = next(p for p in report.problems if p.path == "train/MR/dwi.nii.gz")
    assert warning.severity == "warning" and "classification rejects it" in warning.reason


def test_one_series_uid_in_several_folders_is_no_mixed_series(tmp_path):
    # Prepare: the same CT file exported into two class folders, an MR file given the same series UID
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    mr.SeriesInstanceUID = ct.SeriesInstanceUID
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        ct.save_as(tmp_path / folder / "ct.dcm")
    (tmp_path / "c").mkdir()
    mr.save_as(tmp_path / "c" / "mr.dcm")
    # Execute
    report = scan_folder(tmp_path)
    # Assert: three series, one per folder, no error
    assert [i.kind for i in report.items] == ["dicom-series"] * 3
    assert not [p for p in report.problems if p.severity == "error"]


def _decathlon(root: Path, cases: int) -> Path:
    """``cases`` tiny image/label NIfTI pairs listed in dataset.json; case 1's image is corrupt."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    training = []
    for i in range(cases):
        image, label = f"imagesTr/case{i}.nii.gz", f"labelsTr/case{i}.nii.gz"
        mask = np.zeros((8, 8, 3), dtype=np.uint8)
        mask[2:5, 2:5, 1] = 1
        nib.save(nib.Nifti1Image(rng.random((8, 8, 3)).astype(np.float32), np.eye(4)), root / image)
        nib.save(nib.Nifti1Image(mask, np.eye(4)), root / label)
        training.append({"image": image, "label": label})
    (root / "imagesTr" / "case1.nii.gz").write_bytes(b"not a NIfTI file")  # corrupt
    spec = {"labels": {"0": "background", "1": "lesion"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_segmentation_scan_and_loader_reject_the_same_cases(tmp_path, caplog):
    root = _decathlon(tmp_path / "msd", cases=6)
    # Execute
    layout = check_layout(root, "segmentation", in_channels=1)
    counts, skipped = _loader_verdict(
        caplog, lambda s: load_segmentation_split(root, s, image_size=32, in_channels=1), root
    )
    # Assert: the loader keeps slices of the cases the scanner accepts, and skips the same case
    assert {path.split(" + ")[0] for path, _ in layout.rejected} == skipped == {"imagesTr/case1.nii.gz"}
    assert sum(layout.splits.values()) == 5
    assert {s for s in SPLITS if counts[s]} == {s for s in SPLITS if layout.splits[s]}
    assert layout.classes["labels"] == {0: "background", 1: "lesion"}
    assert "labelsTr/case0.nii.gz" in layout.accepted or "labelsTr/case2.nii.gz" in layout.accepted


def test_main_with_a_task_exits_on_the_layout(classification_site, tmp_path, capsys):
    assert main([str(classification_site), "--task", "classification", "--in-channels", "1"]) == 0
    assert "Layout for task classification: train 6, val 4, test 4" in capsys.readouterr().out
    shutil.rmtree(classification_site / "test")
    out = tmp_path / "scan.json"
    assert main([str(classification_site), "--task", "classification", "--json", str(out)]) == 1
    assert any("no test/ folder" in what for _, what in json.loads(out.read_text())["layout"]["problems"])


def test_a_case_whose_label_grid_differs_is_a_warning(tmp_path, capsys):
    root = _decathlon(tmp_path / "msd", cases=4)
    nib.save(nib.Nifti1Image(np.zeros((4, 8, 3), np.uint8), np.eye(4)), root / "labelsTr" / "case2.nii.gz")
    main([str(root), "--task", "segmentation", "--in-channels", "1"])
    out = capsys.readouterr().out
    assert "image grid 8x8x3 and label labelsTr/case2.nii.gz grid 4x8x3 differ" in out
