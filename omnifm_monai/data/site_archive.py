"""What every task's site data shares: the splits, their train/val/test cuts and the ``.npz`` site archive.

Each task module keeps its own archive keys, ``kind`` marker and validation; this module only names the
splits, cuts a shuffled index into them and writes and reads the archive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SPLITS",
    "SPLIT_FRACTIONS",
    "save_site_archive",
    "load_site_archive",
    "archive_text",
    "PHANTOM_NAMES",
    "is_phantom",
    "split_cuts",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The three splits of every data set and site archive (MedMNIST's file order)."""

SPLIT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
"""Train/val/test fractions of every phantom data set, of carved or flat folders and of each simulated site."""

PHANTOM_NAMES = ("", "phantom")
"""``dataset_dir`` values (besides ``None``) that mean the embedded phantom."""


def save_site_archive(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], texts: Mapping[str, str]) -> None:
    """Write ``arrays`` and ``texts`` (as 0-d ``np.str_`` arrays) to a compressed ``.npz`` at ``path`` as given.

    The parent folder is created; the archive is written through a file object, so that numpy does not
    append a second ``".npz"``, to a temporary file beside ``path`` that then replaces it: a writer stopped
    half-way (a simulator ending a site's turn) leaves no truncated archive for the next reader.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = dict(arrays)
    contents.update({key: np.asarray(value, dtype=np.str_) for key, value in texts.items()})
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as f:
            np.savez_compressed(f, **contents)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_site_archive(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (no pickles), by key.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when it is not a readable ``.npz`` (the message names the file and the reason).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' is not an existing file.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except Exception as e:  # zip, pickle and format errors all mean "not our archive"
        raise ValueError(f"cannot read '{path}' as an .npz archive: {type(e).__name__}: {e}") from e


def archive_text(arrays: Mapping[str, np.ndarray], key: str, default: str) -> str:
    """The text stored under ``key``, or ``default`` when the archive lacks it."""
    return str(arrays[key]) if key in arrays else default


def is_phantom(dataset_dir: str | os.PathLike | None) -> bool:
    """Whether ``dataset_dir`` names the embedded phantom (``None``, ``""`` or ``"phantom"``)."""
    return dataset_dir is None or os.fspath(dataset_dir).strip().lower() in PHANTOM_NAMES


def split_cuts(n: int, fractions: Sequence[float] = SPLIT_FRACTIONS[:2]) -> list[int]:
    """Cut points of ``n`` items into train/val/test with the given train and val fractions (``np.split``)."""
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return [n_train, n_train + n_val]
