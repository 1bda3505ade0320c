"""End to end on real files, as a hospital's IT would run it: scan -> train -> infer -> a 2-site federation.

- A DICOM series site (segmentation): three case folders, each a 6-slice series built from pydicom's real MR
  slice (``MR_small.dcm`` and its re-encodings: implicit VR, big endian, ...; pydicom ships no multi-file
  series) with a mask on the series' own grid: scanned with ``--task segmentation``, trained with
  ``monai.bundle run`` and inferred on one series (the mask keeps the series' affine).
- A 2-site classification federation of real DICOM files and the real NIfTI volumes of
  ``../shared/data/real/segmentation`` (CT and MR): site-1 holds both classes, site-2 only MR, so the
  federation's label map must give site-2's MR the id 1, not the 0 its own folders would. Each site is
  scanned with ``--task classification`` first; the NVFlare simulator job must end with exit 0.

Opt-in (about 4 minutes on 2 CPU cores): ``OMNIFM_RUN_REAL_E2E=1``; skipped where ``../shared`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from simulator_run import run_bounded

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "data" / "real"
BUNDLES = REPO / "bundles"
# pydicom's real MR slice and its re-encodings (uncompressed transfer syntaxes: no codec needed)
MR_FILES = (
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_padded.dcm",
    "MR_small_expb.dcm",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("OMNIFM_RUN_REAL_E2E") != "1", reason="opt-in: OMNIFM_RUN_REAL_E2E=1 (~4 min)"),
    pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is absent"),
]


def _run(*command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    done = run_bounded([sys.executable, *command], timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def _series_case(case: Path, source: str, num_slices: int = 6) -> None:
    """``case/image/``: a series of the real MR slice ``source``; ``case/label.nii.gz`` on its grid."""
    from monai.transforms import LoadImage

    (case / "image").mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file(source, download=False))
    uid = generate_uid()
    x, y, z = (float(v) for v in template.ImagePositionPatient)
    for i in range(num_slices):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), i + 1
        ds.ImagePositionPatient = [x, y, z + float(template.SliceThickness) * i]
        ds.save_as(case / "image" / f"slice{i:02d}.dcm")
    volume = LoadImage(reader="PydicomReader", image_only=True)(str(case / "image"))
    label = (np.asarray(volume) > np.percentile(np.asarray(volume), 70)).astype(np.uint8)  # bright tissue
    nib.save(nib.Nifti1Image(label, volume.affine.numpy()), case / "label.nii.gz")


def _classification_site(root: Path, files: dict[str, list[Path]]) -> Path:
    """``root/<split>/<class>/``: each class's files dealt over train, val, test (the first two to train)."""
    for name, paths in files.items():
        for i, path in enumerate(paths):
            split = ("train", "train", "val", "test")[i % 4]
            (root / split / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / split / name / f"{i}_{path.name}")
    return root


def test_scan_train_infer_and_federate_real_files(tmp_path):
    # ---- a DICOM series site: scan, train, infer ----------------------------------------------------------
    series_site = tmp_path / "series_site"
    for i, source in enumerate(MR_FILES[:3]):
        _series_case(series_site / f"case{i}", source)
    (series_site / "labels.json").write_text(json.dumps({"0": "background", "1": "tissue"}))
    scan = _run("-m", "omnifm_monai.scan", str(series_site), "--task", "segmentation")
    assert "Layout for task segmentation: train 1, val 1, test 1; 6 accepted, 0 rejected" in scan.stdout
    bundle = BUNDLES / "omnifm_segmentation"
    common = ["--bundle_root", str(bundle), "--ckpt_dir", str(tmp_path / "models"), "--image_size", "32"]
    _run(
        "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"), *common,
        "--dataset_dir", str(series_site), "--epochs", "1", "--output_dir", str(tmp_path / "eval"),
        "--progress_bar", "false",
    )  # fmt: skip
    assert (tmp_path / "models" / "model.pt").is_file()
    series = series_site / "case0" / "image"
    _run(
        "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"), *common,
        "--input_dir", str(series), "--train_dataset_dir", str(series_site), "--output_dir", str(tmp_path / "pred"),
    )  # fmt: skip
    masks = sorted((tmp_path / "pred").rglob("*.nii.gz"))  # inside output_dir (the series' mask once fell outside)
    assert [m.name for m in masks] == ["image_seg.nii.gz"] and not list(tmp_path.glob("*_seg.nii.gz"))
    reference = nib.load(series_site / "case0" / "label.nii.gz")
    np.testing.assert_allclose(nib.load(masks[0]).affine, reference.affine, atol=1e-3)

    # ---- a 2-site classification federation on real DICOM and NIfTI files ---------------------------------
    segmentation = REAL / "segmentation"
    ct = [Path(get_testdata_file("CT_small.dcm", download=False))]
    ct += sorted((segmentation / "pyradiomics_lung_ct" / "imagesTr").glob("*.nii.gz"))
    ct += sorted((segmentation / "totalseg_ct" / "imagesTr").glob("*.nii.gz"))
    mr = [Path(get_testdata_file(n, download=False)) for n in MR_FILES]
    mr += sorted((segmentation / "pyradiomics_brain_mr" / "imagesTr").glob("*.nii.gz"))
    mr += sorted((segmentation / "pyradiomics_breast_mr" / "imagesTr").glob("*.nii.gz"))
    sites = tmp_path / "sites"
    _classification_site(sites / "site-1", {"CT": ct[:4], "MR": mr[:4]})
    _classification_site(sites / "site-2", {"MR": mr[4:8]})  # no CT folder: alone it would call MR 0
    for site in ("site-1", "site-2"):
        scan = _run("-m", "omnifm_monai.scan", str(sites / site), "--task", "classification")
        assert "0 rejected" in scan.stdout, scan.stdout
    job = _run(
        "-m", "nvflare_jobs.omnifm_job", "--strategy", "fedavg", "--clients", "2", "--rounds", "1",
        "--threads", "2", "--image-size", "32", "--dataset-dir", str(sites / "{site}"),
        "--bundle-overrides", json.dumps({"batch_size": 2}, separators=(",", ":")),
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / "ws"),
    )  # fmt: skip
    assert "OmniFM job summary: every site finished" in job.stdout, job.stdout[-3000:]
    site_log = (tmp_path / "ws" / "site-2" / "log.txt").read_text(errors="replace")
    assert "site-2: classes ['MR'] -> federation ids [1]" in site_log
    final = json.loads((tmp_path / "state" / "server" / "final_metrics.json").read_text())
    assert sorted(final["metrics"]) == ["site-1", "site-2"] and not final["site_errors"]
