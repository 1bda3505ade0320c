"""Classification labels from files: a MONAI datalist JSON or a CSV, and the split of unsplit data.

Two file formats list a site's images with their labels (paths relative to the listing file's folder,
or absolute):

- a datalist JSON in the ``monai.data.load_decathlon_datalist`` format::

      {"labels": {"0": "benign", "1": "malignant"},                    # optional: names of int labels
       "training": [{"image": "a.png", "label": 0, "patient_id": "p1"}, ...],   # patient_id optional
       "validation": [...], "test": [...]}                              # optional

- a CSV with a header row and the columns ``image,label[,split][,patient_id]`` (``split``: ``train``,
  ``val`` or ``test``; ``training``/``validation`` are accepted too).

Labels are integer ids (``>= 0``) or class names, not both in one file: names are sorted to give the ids;
integer ids are named ``class_{i}`` unless the JSON's ``labels`` names them. Splits that the file does not
give are carved out of its training images by :func:`stratified_split` (seeded, stratified by label, and
by patient when patient ids are given, so that no patient is in two splits) with the project's
:data:`~omnifm_monai.data.site_archive.SPLIT_FRACTIONS`.

A bad entry (a missing file, an unknown column, a label that is neither an id nor a name) raises one
``ValueError`` naming the file, the row and what was expected.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

from omnifm_monai.data.site_archive import SPLIT_FRACTIONS, SPLITS

__all__ = ["LABEL_FILE_SUFFIXES", "CSV_COLUMNS", "LabelFile", "is_label_file", "read_label_file", "stratified_split"]

logger = logging.getLogger(__name__)

LABEL_FILE_SUFFIXES: tuple[str, ...] = (".json", ".csv")
"""``dataset_dir`` file suffixes read by :func:`read_label_file`."""

CSV_COLUMNS: tuple[str, ...] = ("image", "label", "split", "patient_id")
"""The columns a label CSV may have (``image`` and ``label`` required)."""

_JSON_KEYS = {"training": "train", "validation": "val", "test": "test"}
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class _Entry:
    """One listed image: where it is named (for messages), its file, raw label, split and patient."""

    where: str
    image: Path
    label: int | str
    split: str | None
    patient: str | None


@dataclass(frozen=True)
class LabelFile:
    """A listing file read and split: ``items[split]`` is ``[(image path, label id), ...]`` in file order.

    Attributes:
        path: the JSON or CSV file.
        class_names: names indexed by label id.
        items: every split of :data:`SPLITS`, each a list of ``(Path, int)``.
    """

    path: Path
    class_names: tuple[str, ...]
    items: dict[str, list[tuple[Path, int]]]


def is_label_file(path: Path) -> bool:
    """Whether ``path`` is named like a datalist JSON or a label CSV."""
    return path.suffix.lower() in LABEL_FILE_SUFFIXES


def _parse_label(value, where: str) -> int | str:
    """An int id or a class name; anything else is one clear error."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if text and not _NUMBER.match(text):
            return text
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{where}: label {value!r} is neither a class id (an integer >= 0) nor a class name.")


def _checked_image(image, base: Path, where: str, resolved: str | None = None) -> Path:
    """``base / image`` (or MONAI's ``resolved`` path of it), which must be an existing file."""
    if not isinstance(image, (str, os.PathLike)) or not os.fspath(image).strip():
        raise ValueError(f"{where}: image {image!r} is not a file path.")
    path = Path(resolved) if resolved is not None else base / Path(image).expanduser()
    if not path.is_file():
        raise ValueError(f"{where}: image '{path}' is not an existing file (relative paths start at '{base}').")
    return path


def _read_json(path: Path) -> tuple[list[_Entry], dict]:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read '{path}' as a datalist JSON: {type(e).__name__}: {e}") from e
    if not isinstance(content, dict) or "training" not in content:
        raise ValueError(f"'{path}' has no 'training' list; expected {{'training': [{{'image': ..., 'label': ...}}]}}.")
    entries = []
    for key, split in _JSON_KEYS.items():
        if key not in content:
            continue
        raw = content[key]
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise ValueError(f"'{path}' '{key}' is not a list of {{'image': ..., 'label': ...}} entries.")
        # MONAI resolves the image paths against the JSON's folder; labels and patients are taken from the file
        # itself (MONAI would turn a class name that happens to name a file into a path)
        resolved = load_decathlon_datalist(path, is_segmentation=False, data_list_key=key, base_dir=path.parent)
        for i, (entry, item) in enumerate(zip(raw, resolved)):
            where = f"'{path}' {key}[{i}]"
            missing = [k for k in ("image", "label") if k not in entry]
            if missing:
                raise ValueError(
                    f"{where}: no {' or '.join(missing)!r}; expected {{'image': path, 'label': id or name}}."
                )
            patient = entry.get("patient_id")
            image = _checked_image(entry["image"], path.parent, where, resolved=item["image"])
            label = _parse_label(entry["label"], where)
            entries.append(_Entry(where, image, label, split, None if patient is None else str(patient)))
    names = content.get("labels", {})
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise ValueError(f"'{path}' 'labels' must map class ids to names, got {type(names).__name__}.")
    if not all(str(k).strip().isdigit() for k in names):
        raise ValueError(f"'{path}' 'labels' keys {sorted(map(str, names))[:5]} are not class ids (integers >= 0).")
    return entries, {int(k): str(v) for k, v in names.items()}


def _read_csv(path: Path) -> list[_Entry]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: the byte-order mark of Excel's CSVs
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"cannot read '{path}' as a CSV: {type(e).__name__}: {e}") from e
    if not rows:
        raise ValueError(
            f"'{path}' is empty; expected a header row {','.join(CSV_COLUMNS)} (split, patient_id optional)."
        )
    header = [c.strip().lower() for c in rows[0]]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown or "image" not in header or "label" not in header:
        raise ValueError(
            f"'{path}' has the columns {rows[0]}; expected image,label[,split][,patient_id] (unknown: {unknown})."
        )
    entries = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        where = f"'{path}' row {number}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} values for the {len(header)} columns {','.join(header)}.")
        cells = {c: v.strip() for c, v in zip(header, row)}
        split = None
        if "split" in cells:
            split = _SPLIT_ALIASES.get(cells["split"].lower())
            if split is None:
                raise ValueError(f"{where}: split {cells['split']!r} is not one of {SPLITS}.")
        patient = cells.get("patient_id") or None
        image = _checked_image(cells["image"], path.parent, where)
        entries.append(_Entry(where, image, _parse_label(cells["label"], where), split, patient))
    return entries


def _class_ids(entries: list[_Entry], names: dict[int, str], path: Path) -> tuple[list[int], tuple[str, ...]]:
    """Label ids per entry and the class names; one kind of label per file."""
    named = [e for e in entries if isinstance(e.label, str)]
    if named and len(named) < len(entries):
        first_id = next(e for e in entries if not isinstance(e.label, str))
        raise ValueError(
            f"{first_id.where}: label {first_id.label!r} is a class id but {named[0].where} names a class "
            f"({named[0].label!r}); expected ids or names, not both, in '{path}'."
        )
    if named:
        class_names = tuple(sorted({e.label for e in named}))
        index = {name: i for i, name in enumerate(class_names)}
        return [index[e.label] for e in entries], class_names
    ids = [int(e.label) for e in entries]
    size = max([*ids, *names], default=-1) + 1
    return ids, tuple(names.get(i, f"class_{i}") for i in range(size))


def stratified_split(
    labels: Sequence[int],
    groups: Sequence[str] | None = None,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    *,
    seed: int = 0,
) -> np.ndarray:
    """The part (0 .. len(fractions) - 1) of each item: seeded, stratified by label, whole groups together.

    Items of one group (a patient) always land in one part; a group's stratum is its most frequent label
    (the smallest on a tie). Within each stratum the groups are shuffled (``numpy`` generator seeded with
    ``seed``) and laid end to end by image count; a group goes to the part its middle falls in, the parts
    cut at ``round(cumsum(fractions) * images)``. Without groups every item is its own group, which gives
    each label ``round(0.6 n)`` training, then ``round(0.8 n) - round(0.6 n)`` validation items.

    Args:
        labels: (N,) label ids.
        groups: (N,) group keys (patient ids), or ``None``.
        fractions: the parts' shares (they need not sum to 1).
        seed: the shuffle's seed.

    Returns:
        (N,) int64 part of each item.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keys = [str(i) for i in range(len(labels))] if groups is None else [str(g) for g in groups]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    strata: dict[int, list[str]] = {}
    for key in sorted(members, key=lambda k: (len(k), k)):  # numeric keys in number order
        counts = Counter(labels[members[key]].tolist())
        stratum = min(counts, key=lambda label: (-counts[label], label))
        strata.setdefault(stratum, []).append(key)
    shares = np.cumsum(np.asarray(fractions, dtype=np.float64))
    shares /= shares[-1]
    rng = np.random.default_rng(seed)
    parts = np.zeros(len(labels), dtype=np.int64)
    for stratum in sorted(strata):
        stratum_keys = [strata[stratum][i] for i in rng.permutation(len(strata[stratum]))]
        sizes = np.asarray([len(members[k]) for k in stratum_keys], dtype=np.float64)
        cuts = np.round(shares[:-1] * sizes.sum())
        middles = np.cumsum(sizes) - sizes / 2  # where each group's middle falls
        for key, part in zip(stratum_keys, np.searchsorted(cuts, middles, side="right")):
            parts[members[key]] = part
    return parts


def _split(entries: list[_Entry], ids: list[int], seed: int, path: Path) -> list[str]:
    """Each entry's split: as given, the missing ones carved out of the training entries."""
    given = {e.split for e in entries}
    if None in given and len(given) > 1:
        blank = next(e for e in entries if e.split is None)
        raise ValueError(f"{blank.where}: no split while other rows have one; expected one of {SPLITS}.")
    splits = ["train" if e.split is None else e.split for e in entries]
    if "train" not in splits:
        raise ValueError(f"'{path}' lists no training image; expected a 'training' list or split 'train' rows.")
    missing = [s for s in SPLITS if s not in splits]
    if not missing:
        return splits
    pool = [i for i, s in enumerate(splits) if s == "train"]
    with_patients = any(entries[i].patient is not None for i in pool)
    groups = [entries[i].patient or f"\0{i}" for i in pool] if with_patients else None  # \0: no patient
    targets = ["train", *missing]
    fractions = [SPLIT_FRACTIONS[SPLITS.index(s)] for s in targets]
    parts = stratified_split([ids[i] for i in pool], groups, fractions, seed=seed)
    for i, part in zip(pool, parts):
        splits[i] = targets[part]
    return splits


def _warn_shared_patients(entries: list[_Entry], splits: list[str], path: Path) -> None:
    seen: dict[str, set[str]] = {}
    for entry, split in zip(entries, splits):
        if entry.patient is not None:
            seen.setdefault(entry.patient, set()).add(split)
    shared = sorted(p for p, s in seen.items() if len(s) > 1)
    if shared:
        logger.warning("'%s': patients in more than one split (the file's own splits): %s", path, shared[:5])


def read_label_file(path: str | os.PathLike, *, seed: int = 0) -> LabelFile:
    """Read a datalist JSON or label CSV, check every entry and split what the file leaves unsplit.

    Args:
        path: a ``.json`` (``load_decathlon_datalist`` format) or ``.csv`` (``image,label[,split][,patient_id]``).
        seed: the seed of :func:`stratified_split` for the splits the file does not give.

    Returns:
        The :class:`LabelFile`.

    Raises:
        ValueError: for a file that is not a readable listing or a bad entry (one line: file, row, expected).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".json":
        entries, names = _read_json(path)
    elif path.suffix.lower() == ".csv":
        entries, names = _read_csv(path), {}
    else:
        raise ValueError(f"'{path}' is not a label file; expected a datalist .json or a .csv.")
    if not entries:
        raise ValueError(f"'{path}' lists no image; expected at least one image with its label.")
    ids, class_names = _class_ids(entries, names, path)
    splits = _split(entries, ids, seed, path)
    _warn_shared_patients(entries, splits, path)
    items: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for entry, label, split in zip(entries, ids, splits):
        items[split].append((entry.image, label))
    return LabelFile(path, class_names, items)
