"""Shared fixtures of the data tests: small synthetic MSD (Decathlon) folders."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def write_msd(folder: Path, labels: dict, modality: str, volumes: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """An MSD folder: dataset.json + imagesTr/labelsTr NIfTI with the identity affine (RAS, 1 mm)."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for name, (image, mask) in volumes.items():
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), folder / "imagesTr" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), folder / "labelsTr" / f"{name}.nii.gz")
    training = [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in volumes]
    spec = {"name": folder.name, "modality": {"0": modality}, "labels": labels, "training": training}
    (folder / "dataset.json").write_text(json.dumps(spec))
    return folder


def lesion_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16x6: a bright lesion at x, y in [10, 14) (patient right, anterior: the image's upper left) on
    slices 2 and 3."""
    image = np.random.default_rng(seed).random((16, 16, 6)) * 100
    mask = np.zeros((16, 16, 6))
    mask[10:14, 10:14, 2:4] = 1
    image[mask > 0] += 300
    return image, mask


def organ_volume() -> tuple[np.ndarray, np.ndarray]:
    """16x16x10 CT: liver (1) at x, y in [8, 16) (image upper left), spleen (2) at x < 6, y < 8 (image lower
    right) on every slice; kidney (3) nowhere."""
    mask = np.zeros((16, 16, 10))
    mask[8:, 8:] = 1
    mask[:6, :8] = 2
    return mask * 40.0 - 100.0, mask


@pytest.fixture()
def msd_root(tmp_path: Path) -> Path:
    """Two sources: lesion_mr (3 volumes with a tumour mask, MRI) and organs_ct (1 organ-map volume, CT)."""
    root = tmp_path / "segmentation"
    write_msd(
        root / "lesion_mr", {"0": "background", "1": "tumour"}, "MRI", {f"c{i}": lesion_volume(i) for i in range(3)}
    )
    labels = {"0": "background", "1": "liver", "2": "spleen", "3": "kidney"}
    write_msd(root / "organs_ct", labels, "CT", {"abdo": organ_volume()})
    return root
