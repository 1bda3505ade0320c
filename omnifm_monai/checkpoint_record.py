"""What a checkpoint was trained with, kept next to it: ``<ckpt_dir>/metadata.json``.

Training writes (:class:`omnifm_monai.handlers.TrainingRecordSaver`, each time the validator saves) the
bundle's ``configs/metadata.json`` with ``network_data_format`` set to what was trained (input channels and
size, output channels = the class count) and a ``"training"`` section::

    "training": {"task": "classification", "strategy": "fedavg", "bundle": "omnifm_classification",
                 "bundle_version": "0.1.0", "omnifm_monai_version": "0.1.0", "checkpoint": "model.pt",
                 "saved": "2026-12-02T01:00:00Z",
                 "config": {"class_names": [...], "num_classes": 6, "image_size": 64, "in_channels": 3, ...}}

Why a sidecar and not an entry in the checkpoint's ``save_dict``: ``model.pt`` stays the bare state dict every
MONAI tool reads without options (``CheckpointLoader`` with ``load_dict={"model": net}``, ``ckpt_export`` with
no ``key_in_ckpt``, ``torch.load`` + ``load_state_dict``, NVFlare's persistors); ignite's ``Checkpoint`` only
stores objects with a ``state_dict()``; and ``ckpt_export --meta_file <ckpt_dir>/metadata.json`` embeds the
trained metadata, class count included, in the TorchScript file as the model's ``metadata.json``. (The VQA
bundle's ``vocab.json`` already lives beside ``model.pt`` the same way.)

Evaluation and inference configs take their defaults from it (:func:`trained_value`) and refuse a value given
on the command line that contradicts it (:func:`check_training_record`), in one line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omnifm_monai.errors import SiteDataError, one_line_reason

__all__ = [
    "RECORD_FILENAME",
    "write_training_record",
    "load_training_record",
    "trained_value",
    "check_training_record",
]

RECORD_FILENAME = "metadata.json"
"""The record's name in the checkpoint folder (a complete bundle metadata file, ``ckpt_export`` takes it)."""

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """JSON-compatible copy (tuples -> lists, numpy scalars -> Python) so that values compare as stored."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _merge(tree: dict, update: Mapping[str, Any]) -> None:
    """Deep update: nested mappings are merged key by key, other values replace."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = _plain(value)


def write_training_record(
    ckpt_dir: str | os.PathLike,
    bundle_root: str | os.PathLike,
    *,
    task: str,
    config: Mapping[str, Any],
    strategy: str = "centralised",
    network_data_format: Mapping[str, Any] | None = None,
    checkpoint: str = "model.pt",
) -> Path:
    """Write ``<ckpt_dir>/metadata.json``: the bundle's metadata, updated to what was trained.

    Args:
        ckpt_dir: the checkpoint folder.
        bundle_root: the bundle (its ``configs/metadata.json`` is the base).
        task: the bundle's task name (``"classification"`` ...).
        config: the config values the network and its inputs were built with.
        strategy: the federated strategy (``"centralised"`` for a bundle run).
        network_data_format: ``{"inputs": {"image": {"num_channels": 3}}, ...}``: merged into the metadata's
            ``network_data_format`` (the trained input channels and size, the output channels).
        checkpoint: the checkpoint file the record describes.

    Returns:
        the path written (atomically: a reader never sees half a file).
    """
    bundle_root = Path(bundle_root)
    meta_file = bundle_root / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    _merge(meta.setdefault("network_data_format", {}), network_data_format or {})
    from omnifm_monai import __version__

    meta["training"] = {
        "task": task,
        "strategy": strategy,
        "bundle": bundle_root.resolve().name,
        "bundle_version": meta.get("version"),
        "omnifm_monai_version": __version__,
        "checkpoint": checkpoint,
        "saved": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": _plain(dict(config)),
    }
    out = Path(ckpt_dir) / RECORD_FILENAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out)
    return out


def load_training_record(ckpt_dir: str | os.PathLike) -> dict | None:
    """The ``"training"`` section of ``<ckpt_dir>/metadata.json``; ``None`` when there is none (a checkpoint
    from before records, or one copied without it).

    Raises:
        SiteDataError: when the file exists but is not a JSON object with a ``"training"`` section.
    """
    path = Path(ckpt_dir) / RECORD_FILENAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())["training"]
        if not isinstance(record.get("config"), dict):
            raise KeyError("config")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SiteDataError(
            f"'{path}' is not a training record ({type(e).__name__}: {e}); expected the metadata.json training "
            'writes next to model.pt, with a "training": {"config": {...}} section.'
        ) from e
    return record


def trained_value(ckpt_dir: str | os.PathLike, key: str, default: Any = None) -> Any:
    """The value ``key`` had in training, from ``<ckpt_dir>/metadata.json``; ``default`` without a record.

    Bundle configs use it for the ids that must match training:
    ``"image_size": "$trained_value(@ckpt_dir, 'image_size', 64)"``.
    """
    record = load_training_record(ckpt_dir)
    if record is None or key not in record["config"]:
        return default
    value = record["config"][key]
    return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value


def _check_fits(ckpt: Path, network: Any) -> None:
    """One line when the state dict in ``ckpt`` does not load into ``network`` (keys or shapes differ)."""
    import torch

    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors: one line naming the file
        raise SiteDataError(f"'{ckpt}' cannot be read as a checkpoint: {one_line_reason(e)}") from e
    here = network.module.state_dict() if hasattr(network, "module") else network.state_dict()
    if not isinstance(saved, Mapping):
        raise SiteDataError(f"'{ckpt}' is not a state dict (got {type(saved).__name__}); expected what training saves.")
    shapes = [
        f"{k} is {tuple(saved[k].shape)} in the checkpoint, {tuple(here[k].shape)} here"
        for k in here
        if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(here[k].shape)
    ]
    missing, unexpected = sorted(set(here) - set(saved)), sorted(set(saved) - set(here))
    problems = shapes[:2]
    if len(shapes) > 2:
        problems.append(f"{len(shapes) - 2} more shape(s) differ")
    if missing:
        problems.append(f"{len(missing)} key(s) missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    if problems:
        raise SiteDataError(
            f"'{ckpt}' does not fit this config's network: " + "; ".join(problems) + ". Give the class names, "
            "channels and network options it was trained with (--train_dataset_dir or --class_names, "
            f"--in_channels, --spectral, --prompt; training records them in {RECORD_FILENAME} next to it)."
        )


def check_training_record(
    ckpt_dir: str | os.PathLike, checkpoint: str = "model.pt", network: Any = None, **given: Any
) -> dict | None:
    """Refuse, in one line, a run whose values contradict what ``<ckpt_dir>/<checkpoint>`` was trained with.

    Args:
        ckpt_dir: the checkpoint folder.
        checkpoint: the checkpoint file in it (it must exist).
        network: the network the run built: the checkpoint must load into it (keys and shapes), which also
            catches a checkpoint without a record given the wrong classes.
        given: this run's values (``image_size=32, class_names=[...]``); ``None`` values are not checked.

    Returns:
        the record (``None`` when the checkpoint has none: the values are not compared, an info line says so).

    Raises:
        SiteDataError: when the checkpoint is missing, a given value differs from the recorded one, or the
            checkpoint does not load into ``network`` (the message lists the differences and how to fix them).
    """
    ckpt = Path(ckpt_dir) / checkpoint
    if not ckpt.is_file():
        raise SiteDataError(
            f"no checkpoint '{ckpt}': train first, or set ckpt_dir (--ckpt_dir) to the folder holding model.pt."
        )
    record = load_training_record(ckpt_dir)
    if record is None:
        logger.info("'%s' has no %s next to it: the config's values are used.", ckpt, RECORD_FILENAME)
        if network is not None:
            _check_fits(ckpt, network)
        return None
    trained = record["config"]
    conflicts = [
        f"{key}={_plain(value)!r} (trained with {trained[key]!r})"
        for key, value in given.items()
        if value is not None and key in trained and _plain(value) != trained[key]
    ]
    if conflicts:
        raise SiteDataError(
            f"'{ckpt}' was trained with other settings (see '{Path(ckpt_dir) / RECORD_FILENAME}'): this run sets "
            + "; ".join(conflicts)
            + ". Leave these options out to use the checkpoint's values, or use a checkpoint trained with them."
        )
    if network is not None:
        _check_fits(ckpt, network)
    return record
