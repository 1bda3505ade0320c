"""Recompute a site's BatchNorm running statistics for the weights it just received.

With partial participation a site trains in few rounds, while the shared convolutions change in
every round. Statistics the site kept (FedBN, OmniFM: private normalisation layers) or received
(FedAvg: an average over other modalities) then describe activations the current weights no longer
produce. One forward pass over the site's own training data, without gradients, re-estimates them;
no data and no statistic leaves the site, and no weight changes. (PyTorch's
``torch.optim.swa_utils.update_bn`` does the same for loaders of plain tensors; the bundles' batches
are dictionaries that only the trainer's ``prepare_batch`` turns into the network's arguments.)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["recalibrate_norm_statistics"]


def recalibrate_norm_statistics(network: nn.Module, trainer) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance on ``trainer``'s training data.

    Args:
        network: the site's network (BatchNorm layers with ``track_running_stats``).
        trainer: the bundle's ``SupervisedTrainer``: its ``data_loader`` and ``prepare_batch`` give the
            network's inputs exactly as in training (VQA passes the question as an extra argument).

    Returns:
        the number of layers re-estimated (0: nothing to do, the network is untouched).
    """
    norms = [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the whole pass
    was_training = network.training
    network.train()
    try:
        with torch.no_grad():
            for batchdata in trainer.data_loader:
                batch = trainer.prepare_batch(
                    batchdata, trainer.state.device, trainer.non_blocking, **trainer.to_kwargs
                )  # (inputs, targets) or (inputs, targets, args, kwargs)
                args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
                network(batch[0], *args, **kwargs)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        network.train(was_training)
    return len(norms)
