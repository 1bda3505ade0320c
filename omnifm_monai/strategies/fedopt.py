"""Server optimizers on the pseudo-gradient: FedAdam, FedYogi (Reddi et al., ICLR 2021), FedAvgM (Hsu et al., 2019).

The sites train as in FedAvg; the server treats ``delta = weighted_mean(uploads) - x`` as a
(negative) gradient and steps the global state ``x`` with its own optimizer, whose moments persist
across rounds and server restarts (:meth:`ServerOptimizer.state_dict`). Only the float keys of
:func:`~omnifm_monai.strategies.aggregate.optimized_keys` take the step; integer counters and
BatchNorm running statistics take the weighted mean, as in NVFlare's FedOpt.

NVFlare's ``PTFedOptModelShareableGenerator`` and ``FedOpt`` controller run a ``torch.optim``
optimizer on a server-side ``nn.Module``; neither fits here (our server holds numpy arrays and its
own controller), and ``torch.optim.Adam`` is not Reddi's FedAdam (it bias-corrects its moments)
and there is no ``torch.optim`` Yogi. The three updates are plain functions below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from omnifm_monai.strategies.aggregate import WeightedMean, optimized_keys, split_state
from omnifm_monai.strategies.base import Strategy

__all__ = [
    "SERVER_OPTIMIZERS",
    "FedAdam",
    "FedAvgM",
    "FedYogi",
    "ServerOptimizer",
    "adam_update",
    "momentum_update",
    "yogi_update",
]

SERVER_OPTIMIZERS = ("adam", "yogi", "avgm")


def adam_update(
    delta: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: float, beta1: float, beta2: float, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FedAdam (Reddi et al., Algorithm 2): ``(step, m, v)``; the new global value is ``x + step``.

    ``m = b1 m + (1 - b1) d``, ``v = b2 v + (1 - b2) d^2``, ``step = lr m / (sqrt(v) + tau)`` (no bias correction).
    """
    m = beta1 * m + (1 - beta1) * delta
    v = beta2 * v + (1 - beta2) * delta**2
    return lr * m / (np.sqrt(v) + tau), m, v


def yogi_update(
    delta: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: float, beta1: float, beta2: float, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FedYogi (Reddi et al., Algorithm 2): as :func:`adam_update` but ``v = v - (1 - b2) d^2 sign(v - d^2)``."""
    m = beta1 * m + (1 - beta1) * delta
    square = delta**2
    v = v - (1 - beta2) * square * np.sign(v - square)
    return lr * m / (np.sqrt(v) + tau), m, v


def momentum_update(delta: np.ndarray, m: np.ndarray, *, lr: float, momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """FedAvgM (Hsu et al., 2019): ``m = momentum m + d``, ``step = lr m``; ``(step, m)``."""
    m = momentum * m + delta
    return lr * m, m


class ServerOptimizer(WeightedMean):
    """The weighted mean of the uploads, then one server-optimizer step from the global state.

    Args:
        optimizer: ``"adam"``, ``"yogi"`` or ``"avgm"``.
        lr: server learning rate (> 0).
        beta1: first-moment decay (Adam, Yogi), in [0, 1).
        beta2: second-moment decay (Adam, Yogi), in [0, 1).
        tau: adaptivity (Adam, Yogi), > 0; the second moment starts at ``tau**2`` (Reddi et al.: v_-1 >= tau^2).
        momentum: server momentum (AvgM), in [0, 1).

    Raises:
        ValueError: an unknown ``optimizer`` or an option outside its range.
    """

    def __init__(
        self,
        *,
        optimizer: str,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {SERVER_OPTIMIZERS}, got {optimizer!r}.")
        if not lr > 0:
            raise ValueError(f"lr (the server learning rate) must be > 0, got {lr!r}.")
        for name, value in (("beta1", beta1), ("beta2", beta2), ("momentum", momentum)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}.")
        self.optimizer, self.lr, self.beta1, self.beta2, self.tau, self.momentum = (
            optimizer,
            lr,
            beta1,
            beta2,
            tau,
            momentum,
        )
        self.m: dict[str, np.ndarray] = {}  # key -> first moment (momentum buffer for AvgM), float64
        self.v: dict[str, np.ndarray] = {}  # key -> second moment (Adam, Yogi), float64

    def aggregate(self, global_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mean = super().aggregate(global_params)  # integer counters and norm statistics stay this mean
        for key in optimized_keys(global_params):
            x = np.asarray(global_params[key], np.float64)
            delta = np.asarray(mean[key], np.float64) - x  # the pseudo-gradient (negated)
            m = self.m.get(key, np.zeros_like(x))
            if self.optimizer == "avgm":
                step, self.m[key] = momentum_update(delta, m, lr=self.lr, momentum=self.momentum)
            else:
                update = adam_update if self.optimizer == "adam" else yogi_update
                v = self.v.get(key, np.full_like(x, self.tau**2))
                step, self.m[key], self.v[key] = update(
                    delta, m, v, lr=self.lr, beta1=self.beta1, beta2=self.beta2, tau=self.tau
                )
            mean[key] = (x + step).astype(global_params[key].dtype)
        return mean

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**{f"m/{k}": v for k, v in self.m.items()}, **{f"v/{k}": v for k, v in self.v.items()}}

    def load_state_dict(self, state: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> None:
        moments = split_state(state, ("m", "v"), like=like, owner="server optimizer")
        self.m, self.v = moments["m"], moments["v"]


@dataclass(frozen=True, kw_only=True)
class _FedOpt(Strategy):
    """FedAvg on the sites; the server steps with :class:`ServerOptimizer` (options: its keyword arguments)."""

    server_lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    server_momentum: float = 0.9

    server_optimizer = "avgm"  # a class attribute: which update the subclass runs

    def __post_init__(self) -> None:
        super().__post_init__()
        self.aggregator()  # the options' checks, at construction

    def aggregator(self) -> ServerOptimizer:
        return ServerOptimizer(
            optimizer=self.server_optimizer,
            lr=self.server_lr,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
            momentum=self.server_momentum,
        )


@dataclass(frozen=True, kw_only=True)
class FedAdam(_FedOpt):
    """FedAdam: Reddi et al.'s defaults beta1 0.9, beta2 0.99, tau 1e-3; server lr 0.01 (their grid's range)."""

    name: str = "fedadam"
    server_lr: float = 0.01
    server_optimizer = "adam"


@dataclass(frozen=True, kw_only=True)
class FedYogi(_FedOpt):
    """FedYogi: as FedAdam, with Yogi's additive second-moment update."""

    name: str = "fedyogi"
    server_lr: float = 0.01
    server_optimizer = "yogi"


@dataclass(frozen=True, kw_only=True)
class FedAvgM(_FedOpt):
    """FedAvgM: server momentum 0.9, server lr 1.0 (Hsu et al., 2019)."""

    name: str = "fedavgm"
    server_lr: float = 1.0
    server_optimizer = "avgm"
