"""FedProx's proximal term as a training loss: ``task_loss + mu / 2 * ||w - w_global||^2``."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ProximalLoss"]


class ProximalLoss:
    """The bundle's loss plus NVFlare's ``PTFedProxLoss`` against the weights the site received.

    Call :meth:`set_reference` at the start of every round's local training, after the received
    weights are loaded.

    Args:
        task_loss: the bundle's ``loss_function(pred, label)``.
        network: the site's network being trained.
        mu: the proximal weight, > 0.

    Raises:
        ValueError: ``mu`` is not positive.
    """

    def __init__(self, *, task_loss: Callable[..., torch.Tensor], network: nn.Module, mu: float) -> None:
        from nvflare.app_opt.pt.fedproxloss import PTFedProxLoss

        if not mu > 0:
            raise ValueError(f"mu must be > 0, got {mu!r}.")
        self.task_loss, self.network = task_loss, network
        self.proximal = PTFedProxLoss(mu=mu)
        self.reference: nn.Module | None = None

    def set_reference(self, model: nn.Module) -> None:
        """Freeze a copy of ``model`` (the received weights) as the term's anchor."""
        self.reference = copy.deepcopy(model).eval()

    def __call__(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.reference is None:
            raise RuntimeError("ProximalLoss.set_reference(model) must be called before local training.")
        return self.task_loss(pred, label) + self.proximal(self.network, self.reference)
