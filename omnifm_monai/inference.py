"""Inference helpers for the bundles: the input datalist and the predictions writer.

They live in the library, not in a bundle's ``scripts`` folder, so bundle configs reach them by
``_target_`` from any working directory and two bundles never collide on a ``scripts`` package.

- :func:`inference_datalist` reads one file or every file below a folder with
  :func:`omnifm_monai.data.classification.load_image_file` (the preprocessing of folder training data);
  a file that cannot be read is logged, listed as skipped and left out, never fatal.
- :class:`PredictionWriter` is an ignite handler (MONAI ``ClassificationSaver`` writes only a file name and
  the raw values, without header or class names): it writes ``predictions.csv``, ``predictions.json`` and
  ``skipped.csv`` into ``output_dir`` at the end of the evaluator's epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from omnifm_monai.data.classification import load_image_file

__all__ = ["find_input_files", "inference_datalist", "PredictionWriter"]

logger = logging.getLogger(__name__)


def find_input_files(input_path: str | os.PathLike) -> list[Path]:
    """``[input_path]`` for a file; for a folder, every file below it, sorted (hidden files/folders skipped).

    Raises:
        ValueError: when ``input_path`` is empty.
        FileNotFoundError: when it does not exist.
    """
    if not os.fspath(input_path).strip():
        raise ValueError("no input given: set input_dir (--input_dir) to an image file or a folder of images.")
    path = Path(input_path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input_dir '{path}' does not exist.")
    files = []
    for file in sorted(path.rglob("*")):
        hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
        if file.is_file() and not hidden:
            files.append(file)
    return files


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


class PredictionWriter:
    """Ignite handler writing one row per image: file, predicted class id and name, class probabilities.

    At the end of each epoch of the engine it is attached to, it writes into ``output_dir``:

    - ``predictions.csv``: header ``file,class_id,class_name,prob_<class name>...``, one row per image;
    - ``predictions.json``: ``{"class_names": [...], "predictions": [{"file", "class_id", "class_name",
      "probabilities": {class name: p}}], "skipped": [{"file", "reason"}]}``;
    - ``skipped.csv``: ``file,reason`` for the files left out (header only when none).

    Args:
        output_dir: folder for the files (created when missing).
        class_names: class names indexed by class id; their number must match the predictions.
        skipped: ``[{"filename", "reason"}]`` of the files that could not be read, as returned by
            :func:`inference_datalist`.
        filename_key: key of the file name in each item of ``engine.state.batch``.
        pred_key: key of the class probabilities (after softmax) in each item of ``engine.state.output``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        skipped: Sequence[dict] = (),
        filename_key: str = "filename",
        pred_key: str = "pred",
    ) -> None:
        if len(class_names) < 1:
            raise ValueError("class_names must name at least one class.")
        self.output_dir = Path(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.skipped = [{"file": str(s["filename"]), "reason": str(s["reason"])} for s in skipped]
        self.filename_key = filename_key
        self.pred_key = pred_key
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        # MONAI engines decollate: lists of per-image dicts
        files = [item[self.filename_key] for item in engine.state.batch]
        preds = [item[self.pred_key] for item in engine.state.output]
        for file, pred in zip(files, preds, strict=True):
            probs = torch.as_tensor(pred).detach().float().cpu().reshape(-1).numpy()
            if probs.size != len(self.class_names):
                raise ValueError(
                    f"the network gives {probs.size} values per image but {len(self.class_names)} class "
                    "names were given; set class_names (or train_dataset_dir) to the training classes."
                )
            class_id = int(np.argmax(probs))
            self.rows.append(
                {
                    "file": str(file),
                    "class_id": class_id,
                    "class_name": self.class_names[class_id],
                    "probabilities": {n: float(p) for n, p in zip(self.class_names, probs)},
                }
            )

    def _write(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "class_id", "class_name", *(f"prob_{n}" for n in self.class_names)])
            for row in self.rows:
                probs = (f"{row['probabilities'][n]:.6f}" for n in self.class_names)
                writer.writerow([row["file"], row["class_id"], row["class_name"], *probs])
        with open(self.output_dir / "skipped.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "reason"])
            writer.writerows([s["file"], s["reason"]] for s in self.skipped)
        report = {"class_names": self.class_names, "predictions": self.rows, "skipped": self.skipped}
        (self.output_dir / "predictions.json").write_text(json.dumps(report, indent=2))
        logger.info(
            "Wrote %d prediction(s) to '%s' (%d file(s) skipped).",
            len(self.rows),
            self.output_dir / "predictions.csv",
            len(self.skipped),
        )
