"""The strategy base: the options every strategy accepts and the hooks the client and the server call.

A strategy is a frozen dataclass with keyword-only options. The client script
(:mod:`omnifm_monai.flare.client`) and the server core (:mod:`omnifm_monai.flare.server_core`) never
read those options; they call the hooks below, in this order::

    site, once:        network_options() -> the bundle's network; private_keys(network); prepare_trainer(trainer)
    server, once:      uses_knowledge_base; aggregator()
    site, each round:  on_receive(network, trainer, meta) -> evaluate -> before_training(network, trainer)
                       -> the bundle's trainer -> after_training(network, trainer)
                       -> spectral_summary(network, images, groups), site_upload(network, images) -> the payload
    server, each round: aggregator.check_meta(...) and accept(...) per upload -> aggregator.aggregate(global_params);
                        aggregator.outgoing_meta(site) in what each site is sent

The options are the ``--strategy-options`` every strategy takes (``{"recalibrate_norms": true}`` gives
FedAvg the BatchNorm recalibration, ``{"spectral": false}`` is OmniFM's ablation without the spectral
path), so their behaviour is implemented here once; a strategy file only sets its defaults and
overrides the hooks that make it different (see docs/method.md, "Adding a strategy").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.norm_statistics import recalibrate_norm_statistics
from omnifm_monai.flare.payload import spectral_centroids
from omnifm_monai.private_state import is_private_key
from omnifm_monai.strategies.aggregate import Aggregator, WeightedMean
from omnifm_monai.strategies.proximal import ProximalLoss

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["Strategy", "norm_layer_keys"]


def norm_layer_keys(model: nn.Module) -> set[str]:
    """State-dict keys of every BatchNorm/InstanceNorm layer (weights and running statistics)."""
    keys = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NormBase):
            prefix = f"{module_name}." if module_name else ""
            keys.update(prefix + name for name in module.state_dict())
    return keys


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """One federated strategy: its options and the hooks the client and the server call.

    Args:
        name: registry name (also the name of the site's private-state file and of the server's state).
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

    Raises:
        ValueError: ``proximal_mu`` is negative or ``private_patterns`` is a single string.
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
        if isinstance(self.private_patterns, str):
            raise ValueError(f"private_patterns must be a list of patterns, got the string {self.private_patterns!r}.")
        object.__setattr__(self, "private_patterns", tuple(self.private_patterns))  # JSON gives a list

    # ------------------------------------------------------------------ site, once
    def network_options(self) -> dict[str, bool]:
        """Keyword arguments that select the network variant for this strategy."""
        return {"spectral": self.spectral, "prompt": self.prompt}

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

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        """Adapt the bundle's trainer once, before the first round: extra loss terms (FedProx)."""
        if self.proximal_mu > 0:
            trainer.loss_function = ProximalLoss(
                task_loss=trainer.loss_function, network=trainer.network, mu=self.proximal_mu
            )

    # ------------------------------------------------------------------ site, each round
    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        """After the shared weights are loaded: recalibrate BatchNorm statistics, set the prototype bank."""
        if self.recalibrate_norms:
            recalibrate_norm_statistics(network, trainer)
        if self.spectral:
            empty = np.zeros((0, network.token_dim), np.float32)  # (0, d_s): nothing retrieved yet
            network.set_prototypes(meta.get(MetaKey.PROTOTYPES, empty))

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        """Just before the round's local epochs: FedProx anchors its term at the received weights."""
        if isinstance(trainer.loss_function, ProximalLoss):
            trainer.loss_function.set_reference(network)

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        """Just after the round's local epochs, before the private keys are saved (Ditto: the personal model)."""

    def spectral_summary(
        self, network: nn.Module, images: torch.Tensor, groups: np.ndarray | None, *, seed: int
    ) -> np.ndarray | None:
        """What the payload carries beyond weights: the spectral centroids (K, d_s), or None."""
        if not self.spectral:
            return None
        return spectral_centroids(network, images, groups, seed=seed)

    def site_upload(self, network: nn.Module, images: torch.Tensor, *, seed: int) -> dict[str, np.ndarray]:
        """Extra ``meta`` arrays the payload carries from the site's training images (N, C, *S).

        None here; FedDG-ELCFS: the low-band amplitude spectra of a sample of its images. The server's
        aggregator checks them (``Aggregator.check_meta``) and counts their bytes.
        """
        return {}

    # ------------------------------------------------------------------ server
    @property
    def uses_knowledge_base(self) -> bool:
        """The server keeps a spectral knowledge base and the sites upload spectral tokens (GSKR)."""
        return self.spectral

    def aggregator(self) -> Aggregator:
        """A new aggregator for a run: how accepted uploads become the next global state."""
        return WeightedMean()
