"""A site's private parameters on its own disk, so they survive client restarts and server resumes.

The file is the private entries ``{key: tensor}`` plus one entry :data:`CHECKSUM_KEY` (the SHA-256 of
every key, dtype, shape and byte of the others, as uint8), so a flipped byte is caught on loading.
A file written before the checksum existed (no such entry, at least one key) is loaded with a
warning and gets its checksum at the next save.

Recovery (docs/running.md, "Failure modes"): a damaged file stops the site with a ValueError naming
it, never a silent fresh start. The operator restores the file from a backup, or deletes it: a
missing file is the one signal that starts the site's private state fresh (its first round, or the
operator's decision).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["CHECKSUM_KEY", "PrivateStateStore", "state_digest"]

CHECKSUM_KEY = "__omnifm_sha256__"
"""The file's entry holding the checksum of the others (a (32,) uint8 tensor); never a network key."""
logger = logging.getLogger(__name__)


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted keys, dtypes, shapes and raw bytes of ``state``'s tensors."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


class PrivateStateStore:
    """Saves and restores the private part of a site's network in one file.

    The NVFlare simulator restarts the client script for every task when it runs fewer threads
    than clients, so private parameters (suffix c, FedPer head, FedBN norms, prototype bank)
    must live on disk, not in memory.

    Args:
        path: the file, e.g. ``<site workspace>/omnifm_private/private_state.pt``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def save(self, network: nn.Module, private_keys: set[str]) -> None:
        """Write the private entries of ``network``'s state dict (atomic replace, synced to disk).

        Raises:
            ValueError: a private entry holds NaN or Inf (the last good file is kept).
        """
        self.write({k: v for k, v in network.state_dict().items() if k in private_keys})

    def write(self, state: Mapping[str, torch.Tensor]) -> None:
        """Write ``{key: tensor}`` with its checksum (atomic replace, synced to disk).

        Raises:
            ValueError: an entry holds NaN or Inf (the last good file is kept).
        """
        state = {k: v.detach().cpu().clone() for k, v in state.items()}
        bad = _non_finite(state)
        if bad:
            raise ValueError(f"refusing to save NaN/Inf state to {self.path} (keys {bad[:5]}).")
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        record = {**state, CHECKSUM_KEY: torch.tensor(list(bytes.fromhex(state_digest(state))), dtype=torch.uint8)}
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def read(self) -> dict[str, torch.Tensor]:
        """The saved private entries, checked ({} when there is no file).

        Raises:
            ValueError: naming the file, when it is unreadable (truncated), not a private-state file,
                fails its checksum or holds NaN/Inf.
        """
        if not self.exists():
            return {}
        recovery = "restore it from a backup, or delete it to start this site's private state fresh"
        try:
            record = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, OSError(22), unpickling errors: all an unusable file
            raise ValueError(f"{self.path} is unreadable ({type(e).__name__}: {e}); {recovery}.") from e
        if not isinstance(record, dict) or not all(isinstance(v, torch.Tensor) for v in record.values()):
            raise ValueError(f"{self.path} is not a private-state file ({{key: tensor}} expected); {recovery}.")
        state = {k: v for k, v in record.items() if k != CHECKSUM_KEY}
        checksum = record.get(CHECKSUM_KEY)
        if checksum is None and not state:
            raise ValueError(f"{self.path} holds neither entries nor a checksum (never a saved state); {recovery}.")
        if checksum is None:
            logger.warning(f"{self.path} has no checksum (written by an older version); loaded unchecked")
        elif checksum.dtype != torch.uint8 or bytes(checksum.tolist()).hex() != state_digest(state):
            raise ValueError(f"{self.path} fails its SHA-256 checksum (corrupt); {recovery}.")
        bad = _non_finite(state)
        if bad:
            raise ValueError(f"{self.path} holds NaN/Inf in {bad[:5]}; {recovery}.")
        return state

    def load_into(self, network: nn.Module) -> list[str]:
        """Copy the saved private entries into ``network``; returns the keys restored ([] if no file).

        Raises:
            ValueError: naming the file, when :meth:`read` refuses it or it holds keys or shapes this
                network does not have.
        """
        state = self.read()
        own = network.state_dict()
        wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if wrong:
            raise ValueError(f"{self.path} does not match the network (keys or shapes of {wrong[:5]}).")
        network.load_state_dict(state, strict=False)
        return sorted(state)
