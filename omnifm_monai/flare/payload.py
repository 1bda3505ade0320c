"""The one place on a client that decides what leaves the site.

Only shared parameters (never a key the strategy marks private), the spectral summary (one
centroid per local class, never per-image tokens), the sample count and the evaluation
metrics are sent. No image, label, file name or DICOM tag is ever put in a payload.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifm_monai.flare.server_core import MetaKey
from omnifm_monai.private_state import split_state_dict

__all__ = ["shared_state", "spectral_centroids", "outgoing_payload"]


def shared_state(network: nn.Module, private_keys: set[str]) -> dict[str, torch.Tensor]:
    """The network's state without the site's private keys, detached on the CPU."""
    # the naming rule applies even if a caller's private_keys missed a key
    shared, _ = split_state_dict(network.state_dict())
    return {k: v.detach().cpu().clone() for k, v in shared.items() if k not in private_keys}


@torch.no_grad()
def spectral_centroids(
    network: nn.Module, images: torch.Tensor, labels: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """One L2-normalised mean spectral token per local class: (num_local_classes, d_s) float32.

    Args:
        network: an OmniFM network with ``spectral_token(image)``.
        images: (N, C, *S) float tensor.
        labels: (N,) integer labels (they stay here; only the per-class means are returned).
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    tokens = torch.cat(
        [network.spectral_token(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )  # (N, d_s)
    network.train(was_training)
    labels = np.asarray(labels).reshape(-1)
    centroids = [tokens[torch.as_tensor(labels == c)].mean(dim=0) for c in np.unique(labels)]
    return F.normalize(torch.stack(centroids), dim=-1).numpy().astype(np.float32)


def outgoing_payload(
    network: nn.Module, private_keys: set[str], num_samples: int, tokens: np.ndarray | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(params, meta)`` a site sends after local training, and nothing else."""
    params = shared_state(network, private_keys)
    meta: dict[str, Any] = {MetaKey.NUM_SAMPLES: int(num_samples)}
    if tokens is not None:
        meta[MetaKey.TOKENS] = np.asarray(tokens, np.float32)
    meta[MetaKey.UPLOAD_BYTES] = {
        "model": int(sum(v.numel() * v.element_size() for v in params.values())),
        "spectral": int(meta[MetaKey.TOKENS].nbytes) if tokens is not None else 0,
    }
    return params, meta
