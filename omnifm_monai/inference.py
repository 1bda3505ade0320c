"""Inference datalist of the classification bundle (its predictions writer: :mod:`omnifm_monai.handlers`).

They live in the library, not in a bundle's ``scripts`` folder, so bundle configs reach them by
``_target_`` from any working directory and two bundles never collide on a ``scripts`` package.

- :func:`inference_datalist` reads one file or every file below a folder with
  :func:`omnifm_monai.data.image_io.load_image_file` (the preprocessing of folder training data);
  a file that cannot be read is logged, listed as skipped and left out, never fatal.
- :class:`omnifm_monai.handlers.PredictionWriter` writes the predictions.
"""

from __future__ import annotations

import logging
import os

from omnifm_monai.data.image_io import find_input_files, load_image_file

__all__ = ["inference_datalist"]

logger = logging.getLogger(__name__)


def inference_datalist(
    input_path: str | os.PathLike, *, image_size: int = 64, in_channels: int = 3
) -> tuple[list[dict], list[dict]]:
    """Read the images to classify.

    Args:
        input_path: one image file or a folder searched recursively (PNG/JPEG/TIFF/BMP, NIfTI, DICOM).
        image_size: spatial size the network was trained with.
        in_channels: channels the network takes (1 or 3).

    Returns:
        ``(items, skipped)``: ``items`` is ``[{"image": float32 (in_channels, S, S) in [0, 1],
        "filename": str}]`` for every readable file, ``skipped`` is ``[{"filename": str, "reason": str}]``
        for the others (each one is also logged as a warning).

    Raises:
        ValueError: when no file could be read (the message counts the skipped ones).
    """
    items: list[dict] = []
    skipped: list[dict] = []
    files = find_input_files(input_path)
    for file in files:
        try:
            image = load_image_file(file, image_size=image_size, in_channels=in_channels)
        except (ValueError, OSError) as e:
            logger.warning("Skipping '%s': %s", file, e)
            skipped.append({"filename": str(file), "reason": str(e)})
            continue
        items.append({"image": image, "filename": str(file)})
    if not items:
        raise ValueError(
            f"no readable image in '{input_path}': {len(files)} file(s) found, {len(skipped)} skipped "
            "(expected PNG/JPEG/TIFF/BMP, NIfTI or DICOM files)."
        )
    logger.info("Read %d image(s) from '%s', skipped %d.", len(items), input_path, len(skipped))
    return items, skipped
