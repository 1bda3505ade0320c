"""FedBN (Li et al., 2021): every normalisation layer stays at the site."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.strategies.base import Strategy

__all__ = ["FedBN"]


@dataclass(frozen=True, kw_only=True)
class FedBN(Strategy):
    """Weights and running statistics of every BatchNorm/InstanceNorm layer are private (``norm_layer_keys``)."""

    name: str = "fedbn"
    private_norm_layers: bool = True
