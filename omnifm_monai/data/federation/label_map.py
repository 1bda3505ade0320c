"""A label map: the labels of several classification files mapped onto one shared label space.

The fixed-task federation (``cross_modality_shared`` on real files) asks every site the same clinical
question although each file was published with its own labels. A label map says, per file stem, which
shared class each source label becomes; JSON ``{file stem: {source label: shared class name}}``, e.g.::

    {"pneumoniamnist": {"0": "normal", "1": "abnormal"},
     "breastmnist": {"0": "abnormal", "1": "normal"}}

Shared class ids follow the order in which the names first appear in the map (above: ``0 = normal``,
``1 = abnormal``). A source label mapped to ``null`` is dropped with its images; a source label missing
from the map is an error, so that no class is merged or dropped by accident. The map also selects the
files: exactly the stems it names are read (``{stem}.npz``, looked up in the data folders in order).
On the phantom the map names the one stem :data:`PHANTOM_STEM` and selects the findings that are rendered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifm_monai.data.medmnist import ImageClassificationData

__all__ = ["PHANTOM_STEM", "LabelMap", "load_label_map", "find_mapped_files"]

PHANTOM_STEM = "phantom"
"""The stem a label map of the embedded phantom names; its source labels are the phantom's finding ids."""


@dataclass(frozen=True)
class LabelMap:
    """A parsed label map.

    Args:
        class_names: the shared classes; shared id ``i`` is ``class_names[i]``.
        files: file stem -> {source label -> shared id, or ``None`` to drop the label's images}.
        origin: where the map came from (a path or ``"<mapping>"``), for error messages.
    """

    class_names: tuple[str, ...]
    files: dict[str, dict[int, int | None]]
    origin: str = "<mapping>"

    @property
    def stems(self) -> tuple[str, ...]:
        """The file stems the map names, in its order."""
        return tuple(self.files)

    def apply(self, data: ImageClassificationData, stem: str) -> ImageClassificationData:
        """``data`` (the file ``stem``, in its own labels) relabelled into the shared label space.

        Raises:
            ValueError: when a label of the file is not in the map, naming the file, the label and the map.
        """
        table = self.files[stem]
        splits = {}
        for split, (images, labels) in data.splits.items():
            unknown = sorted(set(np.unique(labels).tolist()) - set(table))
            if unknown:
                raise ValueError(
                    f"label map {self.origin}: '{stem}' has {split} label(s) {unknown} that the map does not "
                    f"name; expected every source label among {sorted(table)} (map a label to null to drop it)."
                )
            shared = np.asarray([-1 if table[int(y)] is None else table[int(y)] for y in labels], dtype=np.int64)
            keep = shared >= 0
            splits[split] = (images[keep], shared[keep])  # images (n, S, S[, 3]), labels (n,) shared ids
        space = tuple(sorted({i for i in table.values() if i is not None}))
        return ImageClassificationData(
            name=data.name,
            modality=data.modality,
            class_names=tuple(self.class_names[i] for i in space),
            label_space=space,
            splits=splits,
            source=data.source,
        )


def load_label_map(source: str | os.PathLike | Mapping) -> LabelMap:
    """Parse a label map from a JSON file or an already loaded mapping.

    Args:
        source: the path of a JSON file ``{file stem: {source label: shared class name or null}}``, or
            that mapping itself.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: for unreadable JSON or a wrong layout, naming the file and the entry.
    """
    origin = "<mapping>"
    if not isinstance(source, Mapping):
        path = Path(source).expanduser()
        origin = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"label map '{path}' not found; expected a JSON file.")
        try:
            source = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"label map '{path}' is not valid JSON ({e}).") from e
    if not isinstance(source, Mapping) or not source:
        raise ValueError(f"label map {origin}: expected a non-empty object {{file stem: {{label: class}}}}.")
    names: dict[str, int] = {}
    files: dict[str, dict[int, int | None]] = {}
    for stem, table in source.items():
        if not isinstance(table, Mapping) or not table:
            raise ValueError(f"label map {origin}: '{stem}' maps to {table!r}; expected {{source label: class}}.")
        files[str(stem)] = {}
        for label, name in table.items():
            try:
                label_id = int(label)
            except (TypeError, ValueError):
                raise ValueError(
                    f"label map {origin}: '{stem}' has source label {label!r}; expected an integer label id."
                ) from None
            if name is not None and (not isinstance(name, str) or not name):
                raise ValueError(
                    f"label map {origin}: '{stem}' label {label!r} maps to {name!r}; expected a class name or null."
                )
            files[str(stem)][label_id] = None if name is None else names.setdefault(name, len(names))
    if not names:
        raise ValueError(f"label map {origin}: every label maps to null; expected at least one shared class.")
    return LabelMap(class_names=tuple(names), files=files, origin=origin)


def find_mapped_files(label_map: LabelMap, folders: Sequence[Path]) -> list[Path]:
    """``{stem}.npz`` for each stem of the map, from the first folder holding it.

    Raises:
        FileNotFoundError: naming the stems not found and the folders searched.
    """
    found, missing = [], []
    for stem in label_map.stems:
        path = next((folder / f"{stem}.npz" for folder in folders if (folder / f"{stem}.npz").is_file()), None)
        (found if path else missing).append(path or stem)
    if missing:
        raise FileNotFoundError(
            f"label map {label_map.origin} names {missing}, not found as <stem>.npz in {[str(f) for f in folders]}."
        )
    return found
