"""Federated strategies: what stays at a site, what the client adds to its loss, what the server runs.

Every strategy runs through the same NVFlare controller and the same client script; a strategy is
only the small set of choices below. The averaging itself is NVFlare's
``WeightedAggregationHelper`` (see :mod:`omnifm_monai.flare.server_core`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from monai.utils import look_up_option
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from omnifm_monai.networks.base import TASK_HEAD
from omnifm_monai.private_state import is_private_key

__all__ = ["Strategy", "STRATEGIES", "get_strategy", "norm_layer_keys"]


def norm_layer_keys(model: nn.Module) -> set[str]:
    """State-dict keys of every BatchNorm/InstanceNorm layer (weights and running statistics)."""
    keys = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NormBase):
            prefix = f"{module_name}." if module_name else ""
            keys.update(prefix + name for name in module.state_dict())
    return keys


@dataclass(frozen=True)
class Strategy:
    """One federated strategy.

    Args:
        name: registry name.
        private_patterns: regular expressions of keys kept at the site, on top of the
            ``private`` naming rule (FedPer: the task head).
        private_norm_layers: keep every normalisation layer at the site (FedBN).
        share_nothing: every key is private (local-only training through the same pipeline).
        proximal_mu: FedProx proximal weight; 0 disables the term.
        spectral: build the network with the spectral path and run global spectral retrieval
            (GSKR) on the server (OmniFM).
        prompt: build the network with the site-private suffix c (OmniFM).
        recalibrate_norms: after loading the shared weights, the site re-estimates its BatchNorm
            running statistics on its own training data (one forward pass, no gradient; see
            :mod:`omnifm_monai.flare.norm_statistics`).
    """

    name: str
    private_patterns: tuple[str, ...] = ()
    private_norm_layers: bool = False
    share_nothing: bool = False
    proximal_mu: float = 0.0
    spectral: bool = False
    prompt: bool = False
    recalibrate_norms: bool = False

    def __post_init__(self) -> None:
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}.")

    def private_keys(self, model: nn.Module | Iterable[str]) -> set[str]:
        """Keys of ``model``'s state dict (or of a key list) that never leave the site."""
        keys = list(model.state_dict()) if isinstance(model, nn.Module) else list(model)
        if self.share_nothing:
            return set(keys)
        private = {k for k in keys if is_private_key(k, self.private_patterns)}
        if self.private_norm_layers:
            if not isinstance(model, nn.Module):
                raise TypeError("private_norm_layers needs the model, not only its keys.")
            private |= norm_layer_keys(model)
        return private

    def network_options(self) -> dict[str, bool]:
        """Keyword arguments that select the network variant for this strategy."""
        return {"spectral": self.spectral, "prompt": self.prompt}


_TASK_HEAD_KEYS = rf"^{TASK_HEAD}\."  # every OmniFM network's output layer (classifier, U-Net output, ...)

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("fedavg"),
        Strategy("fedprox", proximal_mu=0.01),
        Strategy("fedper", private_patterns=(_TASK_HEAD_KEYS,)),
        Strategy("fedbn", private_norm_layers=True),
        Strategy("local", share_nothing=True),
        # OmniFM as we run it: the paper's private suffix c, plus the site's normalisation layers and
        # task head (see docs/method.md: +12 points over keeping only c on the phantom), whose BatchNorm
        # statistics the site re-estimates for every model it receives (+11 points on real MedMNIST at
        # 20 % participation, docs/benchmarks.md)
        Strategy(
            "omnifm",
            private_patterns=(_TASK_HEAD_KEYS,),
            private_norm_layers=True,
            spectral=True,
            prompt=True,
            recalibrate_norms=True,
        ),
        # OmniFM exactly as the paper describes it: only c stays at the site
        Strategy("omnifm_paper", spectral=True, prompt=True),
    )
}


def get_strategy(name: str, **overrides) -> Strategy:
    """Look up a strategy by name (``"did you mean"`` on a typo) and optionally override fields.

    Example: ``get_strategy("fedprox", proximal_mu=0.1)``,
    ``get_strategy("omnifm", private_patterns=(r"^task_head\\.",))``.
    """
    strategy = look_up_option(name.lower(), STRATEGIES)
    return dataclasses.replace(strategy, **overrides) if overrides else strategy
