"""FedDyn (Acar et al., ICLR 2021): dynamic regularisation aligns the sites' optima with the global one.

Site ``i`` minimises ``L_i(w) - <g_i, w> + alpha/2 ||w - x||^2`` (``x`` the received weights) and
afterwards updates its private state ``g_i <- g_i - alpha (w_i - x)`` (the linear term's gradient,
kept on the site's disk; nothing beyond the weights is sent). The server keeps
``h <- h - alpha (1/N) sum_i (w_i - x)`` and sends ``x+ = mean_i(w_i) - h / alpha``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from omnifm_monai.strategies.aggregate import VariateMean, optimized_keys
from omnifm_monai.strategies.base import Strategy

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["FedDyn", "FedDynAggregator", "FedDynLoss"]


class FedDynLoss:
    """The bundle's loss plus FedDyn's linear and quadratic terms (the quadratic is NVFlare's ``PTFedProxLoss``).

    Call :meth:`set_reference` before each round's local training and :meth:`update_state` after it.

    Args:
        task_loss: the bundle's ``loss_function(pred, label)``.
        network: the site's network being trained.
        alpha: FedDyn's regularisation weight, > 0.

    Raises:
        ValueError: ``alpha`` is not positive.
    """

    def __init__(self, *, task_loss: Callable[..., torch.Tensor], network: nn.Module, alpha: float) -> None:
        from nvflare.app_opt.pt.fedproxloss import PTFedProxLoss

        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}.")
        self.task_loss, self.network, self.alpha = task_loss, network, alpha
        self.quadratic = PTFedProxLoss(mu=alpha)  # alpha/2 ||w - x||^2
        self.linear: dict[str, torch.Tensor] = {
            k: torch.zeros_like(p, device="cpu") for k, p in network.named_parameters()
        }  # g_i, zero before the first round
        self.reference: nn.Module | None = None

    def set_reference(self, model: nn.Module) -> None:
        """Freeze a copy of ``model`` (the received weights ``x``) as the quadratic term's anchor."""
        self.reference = copy.deepcopy(model).eval()

    def linear_term(self) -> torch.Tensor:
        """``-<g_i, w>`` over the trainable parameters (a scalar)."""
        terms = [
            (self.linear[k].to(p) * p).sum() for k, p in self.network.named_parameters() if p.requires_grad
        ]  # one scalar per parameter
        return -torch.stack(terms).sum()

    @torch.no_grad()
    def update_state(self) -> None:
        """After local training: ``g_i <- g_i - alpha (w_i - x)``."""
        if self.reference is None:
            raise RuntimeError("FedDynLoss.set_reference(model) must be called before update_state().")
        received = dict(self.reference.named_parameters())
        for key, p in self.network.named_parameters():
            self.linear[key] = self.linear[key] - self.alpha * (p.detach().cpu() - received[key].detach().cpu())

    def __call__(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.reference is None:
            raise RuntimeError("FedDynLoss.set_reference(model) must be called before local training.")
        return self.task_loss(pred, label) + self.linear_term() + self.quadratic(self.network, self.reference)


class FedDynAggregator(VariateMean):
    """``x+ = mean(w_i) - h / alpha`` with ``h <- h - alpha (1/N) sum_i (w_i - x)`` (:attr:`variate`, float keys).

    Args:
        alpha: FedDyn's regularisation weight, > 0 (the sites' value).
        num_sites: ``N``; 0: the number of distinct sites accepted so far.

    Raises:
        ValueError: ``alpha`` is not positive or ``num_sites`` is negative.
    """

    state_prefix = "h"

    def __init__(self, *, alpha: float, num_sites: int = 0) -> None:
        super().__init__(num_sites=num_sites)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}.")
        self.alpha = alpha

    def aggregate(self, global_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mean = super().aggregate(global_params)
        n = self.federation_size
        for key in optimized_keys(global_params):
            x = np.asarray(global_params[key], np.float64)
            drift = sum(np.asarray(self._staged[s][0][key], np.float64) - x for s in sorted(self._staged))
            self.variate[key] = self.variate.get(key, np.zeros_like(x)) - self.alpha * drift / n
            mean[key] = (np.asarray(mean[key], np.float64) - self.variate[key] / self.alpha).astype(
                global_params[key].dtype
            )
        return mean


@dataclass(frozen=True, kw_only=True)
class FedDyn(Strategy):
    """FedDyn with Acar et al.'s alpha 0.01; every parameter shared (as FedAvg).

    Args:
        feddyn_alpha: the regularisation weight alpha, > 0.
        num_sites: ``N`` of the server's ``h`` update (0: the distinct sites accepted so far).
    """

    name: str = "feddyn"
    feddyn_alpha: float = 0.01
    num_sites: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.feddyn_alpha > 0:
            raise ValueError(f"feddyn_alpha must be > 0, got {self.feddyn_alpha!r}.")
        if self.num_sites < 0:
            raise ValueError(f"num_sites must be >= 0, got {self.num_sites!r}.")

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        super().prepare_trainer(trainer)
        trainer.loss_function = FedDynLoss(
            task_loss=trainer.loss_function, network=trainer.network, alpha=self.feddyn_alpha
        )

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().before_training(network, trainer)
        _loss(trainer).set_reference(network)

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().after_training(network, trainer)
        _loss(trainer).update_state()

    def site_state(self, trainer: SupervisedTrainer) -> dict[str, torch.Tensor]:
        return {f"linear.{k}": v.clone() for k, v in _loss(trainer).linear.items()}

    def load_site_state(self, trainer: SupervisedTrainer, state: Mapping[str, torch.Tensor]) -> None:
        linear = _loss(trainer).linear
        for name, value in state.items():
            key = name.removeprefix("linear.")
            if key == name or key not in linear or tuple(value.shape) != tuple(linear[key].shape):
                raise ValueError(f"FedDyn site state entry {name!r} does not match the network's parameters.")
            linear[key] = value.detach().cpu().to(linear[key].dtype)

    def aggregator(self) -> FedDynAggregator:
        return FedDynAggregator(alpha=self.feddyn_alpha, num_sites=self.num_sites)


def _loss(trainer: SupervisedTrainer) -> FedDynLoss:
    if not isinstance(trainer.loss_function, FedDynLoss):
        raise RuntimeError("FedDyn.prepare_trainer(trainer) must run before the round's hooks.")
    return trainer.loss_function
