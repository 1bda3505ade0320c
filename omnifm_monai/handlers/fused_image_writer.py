"""Ignite handler writing fused images (NIfTI with the first source's affine, else PNG) at the source's size."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["FusedImageWriter"]

logger = logging.getLogger(__name__)


class FusedImageWriter:
    """Ignite handler: writes each fused ``pred`` (1, S, S) as ``<output_dir>/<A's name>_fused.nii.gz`` (with
    A's affine) when A is NIfTI, else ``_fused.png``, at A's original size. ``written`` lists the files."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.written: list[Path] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(output):
            meta = batch[i] if isinstance(batch, (list, tuple)) else {k: v[i] for k, v in batch.items()}  # decollated
            shape = tuple(int(s) for s in np.asarray(meta["shape"]))
            fused = torch.as_tensor(item["pred"]).detach().float().cpu()[None]  # (1, 1, S, S)
            fused = torch.nn.functional.interpolate(fused, size=shape, mode="bilinear", align_corners=False)
            image = fused[0, 0].clamp(0.0, 1.0).numpy()  # (H, W)
            name = Path(str(meta["source"])).name
            stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
            if bool(meta["nifti"]):
                import nibabel as nib

                affine = np.asarray(meta["affine"], dtype=np.float64)
                path = self.output_dir / f"{stem}_fused.nii.gz"
                nib.save(nib.Nifti1Image(image.astype(np.float32), affine), str(path))
            else:
                from PIL import Image

                path = self.output_dir / f"{stem}_fused.png"
                Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(path)
            logger.info("Wrote fused image '%s'.", path)
            self.written.append(path)
