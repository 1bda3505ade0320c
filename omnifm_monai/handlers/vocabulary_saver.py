"""Ignite handler writing the VQA vocabularies next to the checkpoint when training starts."""

from __future__ import annotations

import os
from pathlib import Path

from omnifm_monai.data.vqa_vocabulary import VQAVocabularies

__all__ = ["VocabularySaver"]


class VocabularySaver:
    """Ignite handler: writes the vocabularies to ``<save_dir>/vocab.json`` when the engine starts.

    Training lists it so that ``model.pt`` always has the vocabularies it needs next to it.
    """

    def __init__(self, save_dir: str | os.PathLike, vocabularies: VQAVocabularies, filename: str = "vocab.json"):
        self.save_dir, self.vocabularies, self.filename = save_dir, vocabularies, filename

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine=None) -> None:
        self.vocabularies.save(Path(self.save_dir) / self.filename)
