"""What a site's trainer keeps between rounds, on the site's disk, so a restarted client trains on unchanged.

The NVFlare simulator with fewer threads than sites, and the external-process executor (a trainer
process per round), start the client script again for a site's next round. Without this, the restart
would reset what an uninterrupted client carries from one round to the next:

- the optimizer's state (AdamW's moments and step counts) and its parameter groups (learning rates);
- the trainer's epoch and iteration counters (``trainer.state``);
- the random streams: PyTorch's, NumPy's and Python's global generators (data-loader shuffling,
  dropout) and the generator of every random transform of the training data (MONAI's
  ``Randomizable.R``: flips, crops).

:func:`training_state` flattens them into ``{key: tensor}`` (numbers and other small values go into one
JSON entry, stored as uint8) so that :class:`~omnifm_monai.flare.site_state.PrivateStateStore` writes them
with its checksum; :func:`restore_training_state` puts them back. Restoring after a restart reproduces the
uninterrupted run bit for bit on the CPU (``tests/flare/test_training_state.py``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from monai.transforms import Randomizable

__all__ = ["training_state", "restore_training_state"]

_META_KEY = "meta_json"  # the JSON entry: counters, parameter groups, the non-array parts of the RNG states
_OPTIMIZER_PREFIX = "optimizer."
_TORCH_RNG_KEY = "rng.torch"
_NUMPY_RNG_KEY = "rng.numpy"
_TRANSFORM_RNG_PREFIX = "rng.transform."


def _random_transforms(transform, seen: set[int] | None = None) -> Iterator[Randomizable]:
    """Every ``Randomizable`` in a transform chain, in a fixed order: the chain's members and the
    transforms they hold (``RandSpatialCropd.cropper`` draws from its own generator)."""
    seen = set() if seen is None else seen
    if transform is None or id(transform) in seen:
        return
    seen.add(id(transform))
    if isinstance(transform, Randomizable):
        yield transform
    children = list(getattr(transform, "transforms", None) or ())
    children += [v for v in getattr(transform, "__dict__", {}).values() if isinstance(v, Randomizable)]
    for child in children:
        yield from _random_transforms(child, seen)


def _training_transform(trainer):
    return getattr(getattr(trainer.data_loader, "dataset", None), "transform", None)


def _numpy_state(state: tuple) -> tuple[torch.Tensor, list]:
    """``RandomState.get_state()`` -> (the (624,) key as int64, the JSON-able rest)."""
    name, key, pos, has_gauss, cached = state
    return torch.as_tensor(np.asarray(key, dtype=np.int64)), [name, int(pos), int(has_gauss), float(cached)]


def _numpy_restore(key: torch.Tensor, rest: list) -> tuple:
    name, pos, has_gauss, cached = rest
    return name, key.numpy().astype(np.uint32), pos, has_gauss, cached


def training_state(trainer) -> dict[str, torch.Tensor]:
    """The trainer's between-round state as ``{key: tensor}`` (see the module docstring).

    Args:
        trainer: a MONAI ``SupervisedTrainer`` (``optimizer``, ``state``, ``data_loader``).
    """
    optimizer = trainer.optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for index, values in optimizer["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIMIZER_PREFIX}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors[_TORCH_RNG_KEY] = torch.get_rng_state()
    tensors[_NUMPY_RNG_KEY], numpy_rest = _numpy_state(np.random.get_state())
    transform_rest = []
    for i, transform in enumerate(_random_transforms(_training_transform(trainer))):
        tensors[f"{_TRANSFORM_RNG_PREFIX}{i}"], rest = _numpy_state(transform.R.get_state())
        transform_rest.append(rest)
    meta = {
        "epoch": int(trainer.state.epoch),
        "iteration": int(trainer.state.iteration),
        "param_groups": optimizer["param_groups"],
        "optimizer_scalars": scalars,
        "python_rng": random.getstate(),
        "numpy_rng": numpy_rest,
        "transform_rng": transform_rest,
    }
    tensors[_META_KEY] = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)
    return tensors


def restore_training_state(trainer, state: Mapping[str, torch.Tensor]) -> bool:
    """Put what :func:`training_state` saved back into ``trainer``; False (nothing done) for an empty ``state``.

    Raises:
        ValueError: the saved state does not fit this trainer (another optimizer, another number of
            random transforms): one line naming what differs.
    """
    if not state:
        return False
    meta = json.loads(bytes(state[_META_KEY].tolist()).decode())
    optimizer_state: dict[int, dict] = {}
    for key, value in state.items():
        if key.startswith(_OPTIMIZER_PREFIX):
            index, name = key[len(_OPTIMIZER_PREFIX) :].split(".", 1)
            optimizer_state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer_scalars"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    own_groups = trainer.optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in own_groups]:
        raise ValueError(
            "the saved training state's optimizer has parameter groups of sizes "
            f"{[len(g['params']) for g in groups]}, this trainer's {[len(g['params']) for g in own_groups]}."
        )
    transforms = list(_random_transforms(_training_transform(trainer)))
    if len(transforms) != len(meta["transform_rng"]):
        raise ValueError(
            f"the saved training state has {len(meta['transform_rng'])} random transforms, "
            f"this trainer's data has {len(transforms)}."
        )
    trainer.optimizer.load_state_dict({"state": optimizer_state, "param_groups": groups})
    trainer.state.epoch, trainer.state.iteration = meta["epoch"], meta["iteration"]
    torch.set_rng_state(state[_TORCH_RNG_KEY])
    np.random.set_state(_numpy_restore(state[_NUMPY_RNG_KEY], meta["numpy_rng"]))
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    for i, (transform, rest) in enumerate(zip(transforms, meta["transform_rng"])):
        transform.R.set_state(_numpy_restore(state[f"{_TRANSFORM_RNG_PREFIX}{i}"], rest))
    return True
