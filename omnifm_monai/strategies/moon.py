"""MOON (Li, He and Song, "Model-Contrastive Federated Learning", CVPR 2021).

The local loss gains ``mu * l_con``: the representation z of the local model is pulled towards the
received global model's representation z_glob and pushed from the previous round's local model's z_prev,

    l_con = -log( exp(cos(z, z_glob) / tau) / (exp(cos(z, z_glob) / tau) + exp(cos(z, z_prev) / tau)) ).

Nothing extra is sent: the global model is the one received, the previous local model stays in
``<site_dir>/moon_previous.pt``. The representation is the input of the network's ``task_head``
(:class:`RepresentationTap`, a forward hook, so no network changes); the batch is taken from the local
network's own forward (a forward pre-hook), so the bundle's ``SupervisedTrainer`` needs nothing special.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from omnifm_monai.networks.base import TASK_HEAD
from omnifm_monai.strategies.base import Strategy

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["MOON", "ModelContrastiveLoss", "RepresentationTap", "model_contrastive_term"]


def model_contrastive_term(
    z: torch.Tensor, z_global: torch.Tensor, z_previous: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """MOON's l_con averaged over the batch; each argument is (B, F) (the positive pair is (z, z_global))."""
    positive = F.cosine_similarity(z, z_global, dim=-1) / temperature  # (B,)
    negative = F.cosine_similarity(z, z_previous, dim=-1) / temperature  # (B,)
    logits = torch.stack([positive, negative], dim=1)  # (B, 2): class 0 is the positive
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


class RepresentationTap:
    """Keeps the latest input of ``network.task_head`` as (B, F): spatial positions averaged for dense heads.

    Args:
        network: an OmniFM network (it has the attribute ``task_head``).

    Raises:
        ValueError: the network has no ``task_head``.
    """

    def __init__(self, network: nn.Module) -> None:
        head = getattr(network, TASK_HEAD, None)
        if not isinstance(head, nn.Module):
            raise ValueError(f"MOON needs the network's {TASK_HEAD!r} module; {type(network).__name__} has none.")
        self.features: torch.Tensor | None = None
        self.handle = head.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        h = inputs[0]
        self.features = h.flatten(2).mean(-1) if h.ndim > 2 else h  # (B, F, *S) -> (B, F)


class ModelContrastiveLoss(nn.Module):
    """``task_loss(pred, label) + mu * l_con`` for the batch of the local network's latest forward.

    Args:
        task_loss: the bundle's loss (called as ``task_loss(pred, label)``).
        network: the site's network (its forward is hooked: batch and representation).
        mu: weight of the contrastive term.
        temperature: tau of the cosine similarities.
        previous_path: file of the previous round's local model at the site.
    """

    def __init__(
        self, *, task_loss: Callable, network: nn.Module, mu: float, temperature: float, previous_path: str
    ) -> None:
        super().__init__()
        self.task_loss, self.mu, self.temperature = task_loss, mu, temperature
        self.previous_path = previous_path
        # frozen copies (made before any hook is registered); a tuple keeps them out of the module tree
        self._models = (network, copy.deepcopy(network).requires_grad_(False), copy.deepcopy(network))
        self._models[2].requires_grad_(False)
        self.taps = tuple(RepresentationTap(m) for m in self._models)
        self.has_previous = False
        self._batch: tuple[tuple, dict] = ((), {})
        network.register_forward_pre_hook(self._keep_batch, with_kwargs=True)
        if os.path.isfile(previous_path):
            self._models[2].load_state_dict(torch.load(previous_path, map_location="cpu", weights_only=True))
            self.has_previous = True

    def _keep_batch(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._batch = (args, kwargs)

    def set_global(self, network: nn.Module) -> None:
        """The received model is this round's global model (and the previous one in the site's first round)."""
        self._models[1].load_state_dict(network.state_dict())
        if not self.has_previous:
            self._models[2].load_state_dict(network.state_dict())

    def save_previous(self, network: nn.Module) -> None:
        """After local training: this model is the next round's previous local model (atomic file replace)."""
        state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        self._models[2].load_state_dict(state)
        self.has_previous = True
        folder = os.path.dirname(os.path.abspath(self.previous_path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, self.previous_path)

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = self.task_loss(pred, label)
        z = self.taps[0].features  # (B, F) of the forward that produced pred
        if self.mu == 0 or z is None:
            return loss
        args, kwargs = self._batch
        with torch.no_grad():  # the global and previous models as fixed encoders (eval mode: no dropout)
            for model in self._models[1:]:
                model.eval()(*args, **kwargs)
        z_global, z_previous = self.taps[1].features, self.taps[2].features  # (B, F) each
        return loss + self.mu * model_contrastive_term(z, z_global, z_previous, temperature=self.temperature)


@dataclass(frozen=True, kw_only=True)
class MOON(Strategy):
    """MOON: FedAvg plus the model-contrastive term (mu 5, temperature 0.5); nothing extra is sent.

    Args:
        moon_mu: weight of the contrastive term.
        temperature: tau of the cosine similarities.

    Raises:
        ValueError: ``moon_mu`` is negative or ``temperature`` is not positive.
    """

    name: str = "moon"
    moon_mu: float = 5.0
    temperature: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.moon_mu < 0:
            raise ValueError(f"moon_mu must be >= 0, got {self.moon_mu}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")

    def attach_site(self, network: nn.Module, trainer: SupervisedTrainer, *, site_dir: str) -> None:
        trainer.loss_function = ModelContrastiveLoss(
            task_loss=trainer.loss_function,
            network=network,
            mu=self.moon_mu,
            temperature=self.temperature,
            previous_path=os.path.join(site_dir, f"{self.name}_previous.pt"),
        )

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().before_training(network, trainer)
        _contrastive_loss(trainer).set_global(network)

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        _contrastive_loss(trainer).save_previous(network)


def _contrastive_loss(trainer: SupervisedTrainer) -> ModelContrastiveLoss:
    loss = trainer.loss_function
    if not isinstance(loss, ModelContrastiveLoss):
        raise RuntimeError("MOON.attach_site(network, trainer, site_dir=...) has not run on this trainer.")
    return loss
