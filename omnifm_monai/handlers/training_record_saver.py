"""Ignite handler writing the checkpoint's training record (``<ckpt_dir>/metadata.json``) when it is saved."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine, Events

from omnifm_monai.checkpoint_record import write_training_record

__all__ = ["TrainingRecordSaver"]


class TrainingRecordSaver:
    """Ignite handler: after each validation epoch (listed after the ``CheckpointSaver``, so the record always
    describes the ``model.pt`` beside it) writes ``<save_dir>/metadata.json``.

    See :func:`omnifm_monai.checkpoint_record.write_training_record` for the arguments and the file.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        bundle_root: str | os.PathLike,
        task: str,
        config: Mapping[str, Any],
        strategy: str = "centralised",
        network_data_format: Mapping[str, Any] | None = None,
        checkpoint: str = "model.pt",
    ) -> None:
        self.save_dir, self.bundle_root, self.task, self.config = save_dir, bundle_root, task, dict(config)
        self.strategy, self.network_data_format, self.checkpoint = strategy, network_data_format, checkpoint

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not os.path.isfile(os.path.join(self.save_dir, self.checkpoint)):
            return  # nothing saved yet: no record without its checkpoint
        write_training_record(
            self.save_dir,
            self.bundle_root,
            task=self.task,
            config=self.config,
            strategy=self.strategy,
            network_data_format=self.network_data_format,
            checkpoint=self.checkpoint,
        )
