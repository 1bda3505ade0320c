"""FedProx (Li et al., 2020): FedAvg plus a proximal term towards the received weights."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.strategies.base import Strategy

__all__ = ["FedProx"]


@dataclass(frozen=True, kw_only=True)
class FedProx(Strategy):
    """The local loss gains ``proximal_mu / 2 * ||w - w_received||^2`` (:class:`~.proximal.ProximalLoss`)."""

    name: str = "fedprox"
    proximal_mu: float = 0.01
