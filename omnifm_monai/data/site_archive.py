"""What every task's site data shares: the ``.npz`` site archive, the site lookup and the summary table.

Each task module keeps its own archive keys, ``kind`` marker and validation; this module only writes and
reads the archive and formats the federation summaries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

__all__ = [
    "save_site_archive",
    "load_site_archive",
    "archive_text",
    "markdown_table",
    "SiteLookup",
    "PHANTOM_NAMES",
    "is_phantom",
    "split_cuts",
    "phantom_site_samples",
]

PHANTOM_NAMES = ("", "phantom")
"""``dataset_dir`` values (besides ``None``) that mean the embedded phantom."""

SiteT = TypeVar("SiteT")


def save_site_archive(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], texts: Mapping[str, str]) -> None:
    """Write ``arrays`` and ``texts`` (as 0-d ``np.str_`` arrays) to a compressed ``.npz`` at ``path`` as given.

    The parent folder is created; the archive is written through a file object, so that numpy does not
    append a second ``".npz"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = dict(arrays)
    contents.update({key: np.asarray(value, dtype=np.str_) for key, value in texts.items()})
    with open(path, "wb") as f:
        np.savez_compressed(f, **contents)


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


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned Markdown table: header line, separator line, one line per row (joined by newlines)."""
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(r) for r in rows)])


class SiteLookup(Generic[SiteT]):
    """Mixin for federation dataclasses with a ``clients`` tuple of site data sets (each with a ``name``)."""

    clients: tuple[SiteT, ...]

    @property
    def num_clients(self) -> int:
        """Number of sites."""
        return len(self.clients)

    def client(self, name: str) -> SiteT:
        """The site called ``name`` (e.g. ``"site-3"``).

        Raises:
            KeyError: when no site has that name.
        """
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"no site named {name!r}; sites: {[c.name for c in self.clients]}.")


def is_phantom(dataset_dir: str | os.PathLike | None) -> bool:
    """Whether ``dataset_dir`` names the embedded phantom (``None``, ``""`` or ``"phantom"``)."""
    return dataset_dir is None or os.fspath(dataset_dir).strip().lower() in PHANTOM_NAMES


def split_cuts(n: int, fractions: Sequence[float] = (0.6, 0.2)) -> list[int]:
    """Cut points of ``n`` items into train/val/test with the given train and val fractions (``np.split``)."""
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return [n_train, n_train + n_val]


def phantom_site_samples(
    task: str,
    scenario: str,
    scenarios: Sequence[str],
    num_clients: int,
    image_size: int,
    samples_per_client: int | None,
    default_samples: int,
    data_dir: str | os.PathLike | None,
    own_data: str,
) -> int:
    """Check the arguments of a task's phantom federation builder; returns the images per site.

    Raises:
        ValueError: for an unknown scenario, fewer than 1 site, an image under 16 px, fewer than 5 samples
            per site, or a ``data_dir`` (``own_data`` says what a real site passes as ``dataset_dir`` instead).
    """
    if scenario not in scenarios:
        raise ValueError(f"scenario={scenario!r} is not supported for {task}; expected one of {tuple(scenarios)}.")
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16 (the phantom's minimum).")
    samples = default_samples if samples_per_client is None else int(samples_per_client)
    if samples < 5:
        raise ValueError(f"samples_per_client={samples} must be >= 5 so that train, val and test are non-empty.")
    if not is_phantom(data_dir):
        raise ValueError(
            f"data_dir={os.fspath(data_dir)!r}: {task} federations are built from the phantom only; give each "
            f"site its own {own_data} as dataset_dir instead."
        )
    return samples
