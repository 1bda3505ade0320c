"""One label map per federation: the federation's class names and each site's label ids in them.

A site numbers its classes from its own data (sorted class folders, a datalist's names, a ``.npz``'s
label space). Two sites with different folders would then give one class two ids, silently. The job
therefore carries the federation's class names (``--class-names``); each site checks its own classes
against them at start and its labels are renumbered to the federation's ids:

- a site holding a subset of the federation's classes is accepted, its ids follow the federation's list
  (folders ``{CT, X-ray}`` in a federation ``(CT, MR, X-ray)`` get ids 0 and 2);
- a site holding a class the federation does not name is refused, with one line naming the site, its
  classes and the expected ones.

``--class-names`` is ``"a,b,c"`` or the path of a file: a JSON list of names, JSON
``{"class_names": [...]}``, or a text file with one name per line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

__all__ = [
    "check_class_names",
    "decode_class_names",
    "encode_class_names",
    "federation_label_ids",
    "held_classes",
    "parse_class_names",
    "relabel",
]


def check_class_names(names: Sequence[str], origin: str = "class names") -> tuple[str, ...]:
    """``names`` as a tuple, checked: at least one, each a non-empty string, no duplicates.

    Raises:
        ValueError: naming ``origin`` and the offending names.
    """
    names = tuple(names)
    if not names:
        raise ValueError(f"{origin}: no class names; expected at least one, e.g. CT,MR,X-ray.")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"{origin}: {bad!r} are not class names; expected non-empty strings.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{origin}: {duplicates} appear more than once in {list(names)}; expected distinct names.")
    return names


def parse_class_names(value: str | os.PathLike) -> tuple[str, ...]:
    """The federation's class names from ``"a,b,c"`` or a file (JSON list, ``{"class_names": [...]}``, lines).

    Raises:
        ValueError: for an unreadable file or a bad list (see :func:`check_class_names`).
    """
    path = Path(value).expanduser()
    if not path.is_file():
        return check_class_names([n.strip() for n in str(value).split(",") if n.strip()], "--class-names")
    text = path.read_text()
    try:
        loaded = json.loads(text)
    except ValueError:
        loaded = [line.strip() for line in text.splitlines() if line.strip()]  # one name per line
    if isinstance(loaded, Mapping):
        loaded = loaded.get("class_names")
    if not isinstance(loaded, list):
        raise ValueError(f"class names file '{path}': expected a JSON list, {{\"class_names\": [...]}} or lines.")
    return check_class_names(loaded, f"class names file '{path}'")


def encode_class_names(names: Sequence[str]) -> str:
    """One command-line word (NVFlare splits a site's arguments on white space): names URL-quoted, comma-joined."""
    return ",".join(quote(n, safe="") for n in names)


def decode_class_names(word: str) -> tuple[str, ...]:
    """The inverse of :func:`encode_class_names` (``""`` -> ``()``)."""
    return tuple(unquote(n) for n in word.split(",")) if word else ()


def held_classes(dataset_dir: str | os.PathLike | None) -> dict[int, str]:
    """The classes of a site's classification data: ``{label id as the loader numbers it: class name}``.

    A ``.npz`` holds only its label space (its other ids are other sites' classes); every other source
    holds :func:`~omnifm_monai.data.classification.class_names_for`, in that order.
    """
    from omnifm_monai.data.classification import class_names_for
    from omnifm_monai.data.medmnist import load_medmnist

    if dataset_dir and str(dataset_dir).lower().endswith(".npz") and Path(dataset_dir).is_file():
        data = load_medmnist(dataset_dir)
        return dict(zip(data.label_space, data.class_names))
    return dict(enumerate(class_names_for(dataset_dir)))


def federation_label_ids(held: Mapping[int, str], federation: Sequence[str], *, where: str) -> dict[int, int]:
    """``{site label id: federation label id}``; every class of the site must be one of the federation's.

    Args:
        held: the site's classes (:func:`held_classes`).
        federation: the federation's class names; federation id ``i`` is ``federation[i]``.
        where: the site (or data folder) the error names.

    Raises:
        ValueError: one line naming ``where``, the classes the federation lacks, the site's and the expected ones.
    """
    index = {name: i for i, name in enumerate(federation)}
    unknown = [name for name in held.values() if name not in index]
    if unknown:
        raise ValueError(
            f"{where}: classes {unknown} are not in the federation's label map; the site has "
            f"{sorted(held.values())}, the federation expects a subset of {list(federation)} "
            "(rename the class folders or fix the job's --class-names)."
        )
    return {site_id: index[name] for site_id, name in held.items()}


def relabel(items: list[dict], ids: Mapping[int, int]) -> list[dict]:
    """``items`` with each ``"label"`` replaced by ``ids[label]`` (new dicts; ``items`` itself for the identity)."""
    if all(site_id == fed_id for site_id, fed_id in ids.items()):
        return items
    return [{**item, "label": np.int64(ids[int(item["label"])])} for item in items]
