"""A site's private parameters on its own disk, so they survive client restarts and server resumes."""

from __future__ import annotations

import os
import tempfile

import torch
from torch import nn

__all__ = ["PrivateStateStore"]


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
        """Write the private entries of ``network``'s state dict (atomic replace)."""
        state = {k: v.detach().cpu() for k, v in network.state_dict().items() if k in private_keys}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), suffix=".tmp")
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load_into(self, network: nn.Module) -> list[str]:
        """Copy the saved private entries into ``network``; returns the keys restored ([] if none saved).

        Raises:
            ValueError: the file holds keys or shapes this network does not have.
        """
        if not self.exists():
            return []
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        own = network.state_dict()
        wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if wrong:
            raise ValueError(f"{self.path} does not match the network (keys or shapes of {wrong[:5]}).")
        network.load_state_dict(state, strict=False)
        return sorted(state)
