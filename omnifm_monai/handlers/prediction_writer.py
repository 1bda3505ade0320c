"""Ignite handler writing the classification bundle's predictions (CSV and JSON with class names) and skips."""

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

from omnifm_monai.handlers.skipped_files import write_skipped_csv

__all__ = ["PredictionWriter"]

logger = logging.getLogger(__name__)


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
        write_skipped_csv(self.output_dir, [{"filename": s["file"], "reason": s["reason"]} for s in self.skipped])
        report = {"class_names": self.class_names, "predictions": self.rows, "skipped": self.skipped}
        (self.output_dir / "predictions.json").write_text(json.dumps(report, indent=2))
        logger.info(
            "Wrote %d prediction(s) to '%s' (%d file(s) skipped).",
            len(self.rows),
            self.output_dir / "predictions.csv",
            len(self.skipped),
        )
