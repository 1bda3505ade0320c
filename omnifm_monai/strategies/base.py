"""The strategy base: the options every strategy accepts and the hooks the client and the server call.

A strategy is a frozen dataclass with keyword-only options. The client script
(:mod:`omnifm_monai.flare.client`) and the server core (:mod:`omnifm_monai.flare.server_core`) never
read those options; they call the hooks below, in this order::

    site, once:        network_options() -> the bundle's network; extend_network(network); private_keys(network);
                       prepare_trainer(trainer); attach_site(network, trainer, site_dir=...);
                       load_site_state(trainer, state) (the strategy's private state from the site's disk)
    server, once:      uses_knowledge_base; aggregator(); the job's initial model through extend_network(network),
                       the controller's initial state through initial_params(params)
    site, each round:  on_receive(network, trainer, meta) -> evaluate evaluation_network(network, trainer)
                       -> before_training(network, trainer) -> the bundle's trainer for
                       round_epochs(local_epochs) epochs -> after_training(network, trainer)
                       -> site_state(trainer) to disk
                       -> spectral_summary(network, images, groups), upload_meta(network, trainer, images)
                       -> the payload
    server, each round: aggregator.validate_meta(...) and accept(...) per upload -> aggregator.aggregate(global_params);
                        aggregator.outgoing_meta(site) in what each site is sent

The options are the ``--strategy-options`` every strategy takes (``{"recalibrate_norms": true}`` gives
FedAvg the BatchNorm recalibration, ``{"spectral": true}`` gives OmniFM its spectral path, off by
default), so their behaviour is implemented here once; a strategy file only sets its defaults and
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
        label_prototypes: label-aware prototypes (with ``spectral``): the site sends the shared class id of
            each centroid, the server keeps it with the entry and sends it with the prototypes, and the
            site's ECA sees each retrieved prototype with its class's code (one prototype of every class
            per sample). Tasks without image labels send none.

    Raises:
        ValueError: ``proximal_mu`` is negative, ``private_patterns`` is a single string, or
            ``label_prototypes`` is set without ``spectral``.
    """

    name: str
    private_patterns: tuple[str, ...] = ()
    private_norm_layers: bool = False
    share_nothing: bool = False
    proximal_mu: float = 0.0
    spectral: bool = False
    prompt: bool = False
    recalibrate_norms: bool = False
    label_prototypes: bool = False

    def __post_init__(self) -> None:
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}.")
        if self.label_prototypes and not self.spectral:
            raise ValueError("label_prototypes needs the spectral path: set spectral=true as well.")
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

    def extend_network(self, network: nn.Module) -> None:
        """Add the strategy's own modules to the bundle's network, on the server and at every site (GPFL)."""

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        """Adapt the bundle's trainer once, before the first round: extra loss terms (FedProx)."""
        if self.proximal_mu > 0:
            trainer.loss_function = ProximalLoss(
                task_loss=trainer.loss_function, network=trainer.network, mu=self.proximal_mu
            )

    def attach_site(self, network: nn.Module, trainer: SupervisedTrainer, *, site_dir: str) -> None:
        """Once, after the site's private keys are restored: per-site state that lives beside the trainer and
        in files under ``site_dir`` (Ditto's personal model, MOON's previous local model)."""

    # ------------------------------------------------------------------ site, each round
    def round_epochs(self, local_epochs: int) -> int:
        """How many epochs the bundle's trainer runs in a round (FedRep: its head epochs, then the body's)."""
        return local_epochs

    def evaluation_network(self, network: nn.Module, trainer: SupervisedTrainer) -> nn.Module:
        """The model the site scores on its test split and reports (Ditto: its personal model)."""
        return network

    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        """After the shared weights are loaded: recalibrate BatchNorm statistics, set the prototype bank."""
        if self.recalibrate_norms:
            recalibrate_norm_statistics(network, trainer)
        if self.spectral:
            empty = np.zeros((0, network.token_dim), np.float32)  # (0, d_s): nothing retrieved yet
            network.set_prototypes(meta.get(MetaKey.PROTOTYPES, empty), meta.get(MetaKey.PROTOTYPE_LABELS))

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

    def spectral_labels(self, groups: np.ndarray | None) -> np.ndarray | None:
        """The shared class id of each row :meth:`spectral_summary` returns, (K,) int64 (label-aware
        prototypes), or None: the option is off, or the task has no image labels (clustered rows)."""
        if not (self.spectral and self.label_prototypes) or groups is None:
            return None
        return np.unique(np.asarray(groups).reshape(-1)).astype(np.int64)  # spectral_centroids' row order

    def upload_meta(
        self, network: nn.Module, trainer: SupervisedTrainer, images: torch.Tensor, *, seed: int
    ) -> dict[str, Any]:
        """Extra ``FLModel.meta`` entries the site sends after training; ``images`` (N, C, *S) are its own.

        None here; SCAFFOLD: its control-variate delta; FedDG-ELCFS: the low-band amplitude spectra of a
        sample of its images. Each key must be in :data:`omnifm_monai.flare.payload.EXTRA_META` and is
        checked by the server's ``Aggregator.validate_meta``.
        """
        return {}

    def site_state(self, trainer: SupervisedTrainer) -> dict[str, torch.Tensor]:
        """The strategy's private state beyond the network (SCAFFOLD's c_i, FedDyn's h_i), kept on the site's disk."""
        return {}

    def load_site_state(self, trainer: SupervisedTrainer, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`site_state`'s output (after :meth:`prepare_trainer`; a restarted client).

        Raises:
            ValueError: ``state`` holds entries this strategy does not keep.
        """
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no site state, got entries {sorted(state)[:5]}.")

    # ------------------------------------------------------------------ server
    @property
    def uses_knowledge_base(self) -> bool:
        """The server keeps a spectral knowledge base and the sites upload spectral tokens (GSKR)."""
        return self.spectral

    def initial_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The server's initial state from the persisted model; adds what ``extend_network`` adds (GPFL).

        NVFlare's job export rebuilds the initial model from its class and constructor arguments, so modules
        a strategy attached to it are not in the persisted model.
        """
        return dict(params)

    def aggregator(self) -> Aggregator:
        """A new aggregator for a run: how accepted uploads become the next global state."""
        return WeightedMean()
