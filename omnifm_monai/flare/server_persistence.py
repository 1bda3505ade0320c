"""The server's state on disk: one folder per resume point, written whole, checked whole on reading.

Layout of ``state_dir`` (see docs/architecture.md, "Where results land"): ``server_state.json``
(round, strategy, history and the SHA-256 of each array file), ``global_params.npz``,
``site_queries.npz`` and, for OmniFM, ``knowledge_base.npz``.

Writing goes to a temporary sibling folder; the swap is two renames (``state_dir`` ->
``state_dir.old``, temporary -> ``state_dir``) and :func:`read_state` falls back to
``state_dir.old`` when a crash fell between them, so no crash loses the last complete round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from omnifm_monai.knowledge import SpectralKnowledgeBase

__all__ = [
    "STATE_FILE",
    "ResumePoint",
    "non_finite_keys",
    "read_npz_file",
    "read_resume_point",
    "read_state",
    "write_state",
]

STATE_FILE = "server_state.json"
logger = logging.getLogger(__name__)


class ResumePoint(NamedTuple):
    """A checked saved state: the round to run next, its history, weights, queries and knowledge base."""

    round: int
    history: list
    params: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]
    knowledge_base: SpectralKnowledgeBase | None
    folder: str  # where it was read from: the state folder or its ``.old`` copy


def non_finite_keys(params: Mapping[str, np.ndarray]) -> list[str]:
    """Keys of float arrays holding NaN or Inf."""
    return [k for k, v in params.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_synced(path: str, write: Callable[[Any], None]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_state(
    state_dir: str | os.PathLike,
    *,
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    extra_files: Mapping[str, Callable[[str], None]],
    meta: Mapping[str, Any],
) -> None:
    """Write one resume point: ``arrays`` as ``{file name: {key: array}}`` (.npz), ``extra_files``
    as ``{file name: writer(path)}`` and ``meta`` with the files' checksums as :data:`STATE_FILE`.

    Raises:
        ValueError: ``meta`` is not JSON-serialisable (nothing on disk changes).
    """
    state_dir = os.fspath(state_dir)
    text = json.dumps(dict(meta), indent=1, allow_nan=False)  # fails before any file is touched
    parent = os.path.dirname(os.path.abspath(state_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".server_state_", dir=parent)
    try:
        checksums = {}
        for name, content in arrays.items():
            _write_synced(os.path.join(tmp, name), lambda f, c=content: np.savez(f, **c))
        for name, writer in extra_files.items():
            writer(os.path.join(tmp, name))
        for name in sorted(os.listdir(tmp)):
            checksums[name] = _sha256(os.path.join(tmp, name))
        text = json.dumps({**meta, "checksums": checksums}, indent=1, allow_nan=False)
        _write_synced(os.path.join(tmp, STATE_FILE), lambda f: f.write(text.encode()))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = state_dir + ".old"
    if os.path.exists(state_dir):
        shutil.rmtree(old, ignore_errors=True)  # state_dir is complete: the older copy is not needed
        os.replace(state_dir, old)
    os.replace(tmp, state_dir)  # a crash before this line leaves state_dir.old, which read_state uses
    shutil.rmtree(old, ignore_errors=True)


def read_npz_file(path: str) -> dict[str, np.ndarray]:
    """The arrays of one ``.npz`` (``allow_pickle=False``).

    Raises:
        ValueError: naming ``path`` when it is missing, truncated or not an ``.npz``.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # BadZipFile, EOFError, OSError, ValueError: all mean an unusable file
        raise ValueError(
            f"{path} is unreadable ({type(e).__name__}: {e}); restore it or remove the state folder."
        ) from e


def read_state(state_dir: str | os.PathLike) -> tuple[str, dict[str, Any]] | None:
    """The folder holding the latest complete resume point and its checked :data:`STATE_FILE`.

    ``state_dir`` itself, or ``state_dir.old`` when a crash fell between :func:`write_state`'s two
    renames; None when neither holds a state. Every file listed in the checksums is verified.

    Raises:
        ValueError: naming the file that is unreadable, not a state, or fails its checksum.
    """
    state_dir = os.fspath(state_dir)
    folder = next((d for d in (state_dir, state_dir + ".old") if os.path.isfile(os.path.join(d, STATE_FILE))), None)
    if folder is None:
        return None
    if folder != state_dir:
        logger.warning(f"{state_dir} has no complete state; resuming from {folder} (a save was interrupted)")
    path = os.path.join(folder, STATE_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path} is unreadable ({type(e).__name__}: {e}); restore it or remove the state folder."
        ) from e
    if not isinstance(saved, dict) or not {"round", "strategy", "history"} <= set(saved):
        raise ValueError(f"{path} is not a server state (expected keys round, strategy, history).")
    for name, digest in (saved.get("checksums") or {}).items():
        file = os.path.join(folder, name)
        if not os.path.isfile(file) or _sha256(file) != digest:
            raise ValueError(
                f"{file} is missing or fails its SHA-256 checksum (corrupt); restore it or remove the state folder."
            )
    return folder, saved


def read_resume_point(
    state_dir: str | os.PathLike,
    *,
    strategy: str,
    shared_shapes: Mapping[str, tuple[int, ...]],
    with_knowledge_base: bool,
) -> ResumePoint | None:
    """The saved state of :func:`read_state`, every part checked for a run of ``strategy``; None when none.

    Raises:
        ValueError: naming the file, when it is unreadable or fails its checksum, belongs to another
            strategy or model, holds NaN/Inf weights, a round that is not an integer >= 0, or an
            invalid knowledge base.
    """
    found = read_state(state_dir)
    if found is None:
        return None
    folder, saved = found
    state_file = os.path.join(folder, STATE_FILE)
    if saved["strategy"] != strategy:
        raise ValueError(f"{state_file} holds a {saved['strategy']!r} run, not {strategy!r}.")
    round_num, history = saved["round"], saved["history"]
    if isinstance(round_num, bool) or not isinstance(round_num, int) or round_num < 0 or not isinstance(history, list):
        raise ValueError(f"{state_file} has round {round_num!r}; expected an integer >= 0 and a history list.")
    params_file = os.path.join(folder, "global_params.npz")
    params = read_npz_file(params_file)
    if {k: tuple(v.shape) for k, v in params.items()} != dict(shared_shapes):
        raise ValueError(f"{params_file} holds weights of another model (shared keys or shapes differ).")
    bad = non_finite_keys(params)
    if bad:
        raise ValueError(f"{params_file} holds NaN or Inf in {bad[:5]}; restore an earlier state.")
    queries = read_npz_file(os.path.join(folder, "site_queries.npz"))
    kb = None
    if with_knowledge_base:
        kb_file = os.path.join(folder, "knowledge_base.npz")
        kb_state = read_npz_file(kb_file)
        try:
            kb = SpectralKnowledgeBase.from_state_dict(kb_state)
        except ValueError as e:
            raise ValueError(f"{kb_file} is not a valid knowledge base: {e}") from e
    return ResumePoint(round_num, history, params, queries, kb, folder)
