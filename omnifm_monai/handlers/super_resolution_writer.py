"""Ignite handler writing super-resolved images (PNG, or NIfTI with the in-plane spacing divided by the scale)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events

from omnifm_monai.handlers.skipped_files import write_skipped_csv

__all__ = ["SuperResolutionWriter"]

logger = logging.getLogger(__name__)


def _output_name(filename: str, kind: str) -> str:
    name = Path(filename).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)] + "_sr" + ext
    if kind == "dicom":  # a DICOM file (with or without .dcm) or a series folder -> NIfTI
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in (".dcm", ".dicom") else name
        return stem + "_sr.nii.gz"
    return Path(name).stem + "_sr.png"


def _scaled_affine(affine: np.ndarray, scale: int) -> np.ndarray:
    """In-plane (first two voxel axes) spacing divided by ``scale``, voxel centres kept on the same grid."""
    out = np.array(affine, dtype=np.float64)
    for axis in (0, 1):
        out[:3, 3] += out[:3, axis] * (1.0 / scale - 1.0) / 2.0  # centre of the first HR voxel
        out[:3, axis] /= scale
    return out


class SuperResolutionWriter:
    """Ignite handler: writes each super-resolved image into ``output_dir`` when the evaluator's epoch ends.

    PNG (and other PIL) inputs are written as 8-bit PNG ``<stem>_sr.png`` (gray if the input was gray);
    NIfTI inputs, DICOM files and DICOM series folders as ``<name>_sr.nii.gz`` with every slice super-resolved
    in-plane, the intensities mapped back to the input's range (DICOM: the rescaled stored values) and the
    affine's in-plane spacing divided by ``scale``. ``skipped`` (from
    :func:`super_resolution_inference_datalist`) is written to ``skipped.csv``.
    """

    def __init__(self, output_dir: str | os.PathLike, scale: int, skipped: Sequence[dict] = ()) -> None:
        self.output_dir, self.scale, self.skipped = Path(output_dir), int(scale), list(skipped)
        self._slices: dict[str, dict] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):  # decollated: one dict per image
            pred = output["pred"].detach().float().cpu().clamp(0, 1).numpy()  # (C, H * scale, W * scale)
            entry = self._slices.setdefault(item["filename"], {"item": item, "slices": {}})
            entry["slices"][int(item["slice"])] = pred

    def _write(self, engine: Engine) -> None:
        import nibabel as nib
        from PIL import Image

        self.output_dir.mkdir(parents=True, exist_ok=True)
        for filename, entry in self._slices.items():
            item, slices = entry["item"], entry["slices"]
            out = self.output_dir / _output_name(filename, item["kind"])
            if item["kind"] in ("nifti", "dicom"):
                low, high = (float(v) for v in item["range"])
                volume = np.stack([slices[k].mean(axis=0) for k in sorted(slices)], axis=-1)  # (X', Y', Z)
                volume = volume * (high - low) + low
                affine = _scaled_affine(np.asarray(item["affine"]), self.scale)
                nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), str(out))
            else:
                image = slices[0]  # (C, H', W')
                image = image.mean(axis=0) if int(item["channels"]) == 1 else image[:3].transpose(1, 2, 0)
                Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(out)
            logger.info("Wrote '%s'.", out)
        write_skipped_csv(self.output_dir, self.skipped)
        self._slices = {}
