"""FedAvg (McMahan et al., 2017): every parameter shared, the server's weighted mean."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.strategies.base import Strategy

__all__ = ["FedAvg"]


@dataclass(frozen=True, kw_only=True)
class FedAvg(Strategy):
    """Only the ``private`` naming rule keeps keys at the site; the base hooks do the rest."""

    name: str = "fedavg"
