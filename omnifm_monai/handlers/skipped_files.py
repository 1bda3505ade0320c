"""Ignite handler writing the input files an inference run left out (``skipped.csv``) and a one-line summary."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events

__all__ = ["SkippedFilesWriter", "write_skipped_csv"]

logger = logging.getLogger(__name__)


def write_skipped_csv(output_dir: str | os.PathLike, skipped: Sequence[dict]) -> Path:
    """Write ``<output_dir>/skipped.csv`` (``file,reason``; header only when nothing was skipped).

    Args:
        output_dir: folder for the file (created when missing).
        skipped: ``[{"filename", "reason"}]`` as the inference datalists return them.

    Returns:
        the path written.
    """
    path = Path(output_dir) / "skipped.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        writer.writerows([str(s["filename"]), str(s["reason"])] for s in skipped)
    return path


class SkippedFilesWriter:
    """Ignite handler: at the end of the engine's run writes ``skipped.csv`` and logs
    ``"Processed N input(s), skipped M (see skipped.csv)"``.

    Args:
        output_dir: folder for ``skipped.csv``.
        skipped: ``[{"filename", "reason"}]`` of the inputs left out.
    """

    def __init__(self, output_dir: str | os.PathLike, skipped: Sequence[dict] = ()) -> None:
        self.output_dir, self.skipped = Path(output_dir), list(skipped)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        path = write_skipped_csv(self.output_dir, self.skipped)
        processed = len(engine.state.dataloader.dataset) if engine.state.dataloader is not None else "?"
        logger.info("Processed %s input(s), skipped %d (see '%s').", processed, len(self.skipped), path)
