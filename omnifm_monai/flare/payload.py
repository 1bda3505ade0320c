"""The one place on a client that decides what leaves the site.

Only shared parameters (never a key the strategy marks private), the spectral summary (one
centroid per local class, or per cluster of the site's tokens for tasks without image labels;
never per-image tokens; with label-aware prototypes also the shared class id of each centroid, i.e.
which classes the site holds), the strategy's documented extra uploads (:data:`EXTRA_META`:
SCAFFOLD's control-variate delta, one array per shared float parameter; FedDG-ELCFS's low-band
amplitude spectra of a sample of its images), the sample count, the upload sizes and the evaluation
metrics are sent (after a failed round: the metrics and ``MetaKey.TRAINING_FAILED`` only). No image,
per-image label, file name, DICOM tag or error message is ever put in a payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.private_state import split_state_dict

__all__ = [
    "EXTRA_META",
    "shared_state",
    "cluster_tokens",
    "spectral_centroids",
    "outgoing_payload",
    "DEFAULT_NUM_CLUSTERS",
]

EXTRA_META = {MetaKey.CONTROL_DELTA: "control", MetaKey.AMPLITUDE_SPECTRA: "spectral"}
"""The entries a strategy's ``upload_meta`` may add, and the byte count each is reported under."""

DEFAULT_NUM_CLUSTERS = 4
"""Centroids a site uploads per round when its task has no image-level labels (segmentation, SR, ...)."""


def shared_state(network: nn.Module, private_keys: set[str]) -> dict[str, torch.Tensor]:
    """The network's state without the site's private keys, detached on the CPU."""
    # the naming rule applies even if a caller's private_keys missed a key
    shared, _ = split_state_dict(network.state_dict())
    return {k: v.detach().cpu().clone() for k, v in shared.items() if k not in private_keys}


def cluster_tokens(tokens: torch.Tensor, num_clusters: int, *, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Spherical k-means of unit tokens (N, d_s) -> one cluster id per token (N,) int64.

    Seeded k-means++ initialisation, cosine assignment; ``min(num_clusters, N)`` clusters, none empty.
    """
    n = tokens.shape[0]
    k = max(1, min(int(num_clusters), n))
    generator = torch.Generator().manual_seed(seed)
    centres = tokens[torch.randint(n, (1,), generator=generator)]  # (1, d_s)
    for _ in range(1, k):  # k-means++: the next centre is drawn far from the chosen ones
        distance = (1 - tokens @ centres.T).min(dim=1).values.clamp_min(0)  # (N,)
        weights = distance if distance.sum() > 0 else torch.ones(n)
        centres = torch.cat([centres, tokens[torch.multinomial(weights, 1, generator=generator)]])
    for _ in range(iterations):
        assignment = (tokens @ centres.T).argmax(dim=1)  # (N,)
        for c in range(k):
            members = tokens[assignment == c]
            if len(members):
                centres[c] = F.normalize(members.mean(dim=0), dim=0)
    assignment = (tokens @ centres.T).argmax(dim=1)
    return torch.unique(assignment, return_inverse=True)[1].numpy().astype(np.int64)  # ids 0..k'-1, none empty


@torch.no_grad()
def spectral_centroids(
    network: nn.Module,
    images: torch.Tensor,
    groups: np.ndarray | None = None,
    *,
    num_clusters: int = DEFAULT_NUM_CLUSTERS,
    seed: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """One L2-normalised mean spectral token per group: (num_groups, d_s) float32.

    Args:
        network: an OmniFM network with ``spectral_token(image)``.
        images: (N, C, *S) float tensor (the network's input).
        groups: (N,) group ids, e.g. class labels (they stay here; only the per-group means are
            returned). ``None``: the tokens are clustered into ``num_clusters`` groups
            (:func:`cluster_tokens`), for tasks without image-level labels.
        num_clusters: groups when ``groups`` is None.
        seed: seeds the clustering.
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    tokens = torch.cat(
        [network.spectral_token(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )  # (N, d_s)
    network.train(was_training)
    if groups is None:
        groups = cluster_tokens(F.normalize(tokens, dim=-1), num_clusters, seed=seed)
    groups = np.asarray(groups).reshape(-1)
    centroids = [tokens[torch.as_tensor(groups == g)].mean(dim=0) for g in np.unique(groups)]
    return F.normalize(torch.stack(centroids), dim=-1).numpy().astype(np.float32)


def outgoing_payload(
    network: nn.Module,
    private_keys: set[str],
    num_samples: int,
    tokens: np.ndarray | None = None,
    *,
    token_labels: np.ndarray | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(params, meta)`` a site sends after local training, and nothing else.

    Args:
        token_labels: the shared class id of each row of ``tokens`` (label-aware prototypes), int64 (K,).
        extra_meta: the strategy's ``upload_meta``, keys in :data:`EXTRA_META`: a ``{key: array}`` entry
            keeps only the shared keys' arrays, an array entry is sent as it is; all as float32, and
            counted in ``MetaKey.UPLOAD_BYTES`` under the entry's kind.

    Raises:
        ValueError: ``extra_meta`` holds a key outside :data:`EXTRA_META`.
    """
    params = shared_state(network, private_keys)
    meta: dict[str, Any] = {MetaKey.NUM_SAMPLES: int(num_samples)}
    if tokens is not None:
        meta[MetaKey.TOKENS] = np.asarray(tokens, np.float32)
        if token_labels is not None:
            meta[MetaKey.TOKEN_LABELS] = np.asarray(token_labels, np.int64)
    extra_bytes = {"spectral": 0, "control": 0}
    for name, value in (extra_meta or {}).items():
        if name not in EXTRA_META:
            raise ValueError(
                f"extra_meta key {name!r} is not a documented upload; expected one of {sorted(EXTRA_META)}."
            )
        if isinstance(value, Mapping):  # per-parameter arrays: shared keys only
            meta[name] = {k: np.asarray(v, np.float32) for k, v in value.items() if k in params}
            extra_bytes[EXTRA_META[name]] += sum(a.nbytes for a in meta[name].values())
        else:
            meta[name] = np.asarray(value, np.float32)
            extra_bytes[EXTRA_META[name]] += meta[name].nbytes
    meta[MetaKey.UPLOAD_BYTES] = {
        "model": int(sum(v.numel() * v.element_size() for v in params.values())),
        "spectral": sum(int(meta[key].nbytes) for key in (MetaKey.TOKENS, MetaKey.TOKEN_LABELS) if key in meta)
        + int(extra_bytes["spectral"]),
        "control": int(extra_bytes["control"]),
    }
    return params, meta
