"""Ditto (Li et al., "Ditto: Fair and Robust Federated Learning Through Personalization", ICML 2021).

Each site keeps a personal model v next to the global model w. The global model trains exactly as in
FedAvg (the bundle's trainer, the shared weights sent); after it, the personal model trains the same
number of epochs on ``task loss + lambda / 2 * ||v - w_received||^2``, pulled to the global weights the
site received this round, and is what the site scores and reports. v never leaves the site: NVFlare's
``PTDittoHelper`` keeps it in ``<site_dir>/personalized_model.pt``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from nvflare.app_opt.pt.ditto import PTDittoHelper
from torch import nn
from torch.nn.modules.loss import _Loss

from omnifm_monai.strategies.base import Strategy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from monai.engines import SupervisedTrainer

__all__ = ["Ditto", "PersonalModel", "personal_model_of"]

PERSONAL_MODEL = "ditto_personal_model"  # the attribute of the trainer holding the site's PersonalModel


class _TrainerLoss(_Loss):
    """The trainer's loss as a torch ``_Loss`` (``PTDittoHelper`` checks the type); FedProx-free task loss."""

    def __init__(self, loss_function: Any) -> None:
        super().__init__()
        self._loss = [loss_function]  # not a submodule: the helper never owns the trainer's loss

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self._loss[0](pred, label)


def _same_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class over ``model`` with its first group's hyperparameters."""
    fresh = type(optimizer)(model.parameters())
    group = fresh.param_groups[0]
    group.update({k: v for k, v in optimizer.param_groups[0].items() if k != "params" and k in group})
    return fresh


class PersonalModel(PTDittoHelper):
    """NVFlare's ``PTDittoHelper`` over a MONAI trainer: v trains on the trainer's own batches and inferer.

    Args:
        trainer: the bundle's trainer (its network is copied for v, its optimizer's class and defaults reused).
        ditto_lambda: weight of the pull ``lambda / 2 * ||v - w||^2`` (NVFlare's ``PTFedProxLoss``).
        site_dir: the site's private folder (v's file).
    """

    def __init__(self, trainer: SupervisedTrainer, *, ditto_lambda: float, site_dir: str) -> None:
        model = copy.deepcopy(trainer.network)
        optimizer = _same_optimizer(trainer.optimizer, model)
        device = trainer.state.device or next(model.parameters()).device
        super().__init__(
            criterion=_TrainerLoss(getattr(trainer.loss_function, "task_loss", trainer.loss_function)),
            model=model,
            optimizer=optimizer,
            device=torch.device(device),
            app_dir=site_dir,
            ditto_lambda=ditto_lambda,
        )
        self.trainer = trainer
        self.reference: nn.Module | None = None  # w as received this round, frozen
        self.start_epoch = 0

    def anchor(self, network: nn.Module) -> None:
        """Keep a frozen copy of the received global weights w (the pull's target) before w trains."""
        self.reference = copy.deepcopy(network).requires_grad_(False)
        self.start_epoch = self.trainer.state.epoch

    def local_train(self, train_loader: Any, model_global: nn.Module, abort_signal: Any = None, writer: Any = None):
        """``self.model_epochs`` epochs of v on ``task loss + pull to model_global`` (the trainer's batches)."""
        trainer = self.trainer
        self.model.train()
        for _ in range(self.model_epochs):
            for batch in train_loader:
                prepared = trainer.prepare_batch(batch, self.device, trainer.non_blocking)
                inputs, targets = prepared[0], prepared[1]
                args, kwargs = (prepared[2], prepared[3]) if len(prepared) == 4 else ((), {})
                pred = trainer.inferer(inputs, self.model, *args, **kwargs)
                loss = self.criterion(pred, targets) + self.prox_criterion(self.model, model_global)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            self.epoch_global += 1

    def train_after_global(self) -> None:
        """As many epochs of v as the global model just trained, then save v at the site."""
        if self.reference is None:
            raise RuntimeError("PersonalModel.anchor(network) must run before the round's training.")
        self.model_epochs = max(1, self.trainer.state.epoch - self.start_epoch)
        self.local_train(self.trainer.data_loader, self.reference)
        self.save_model()
        self.reference = None


def personal_model_of(trainer: SupervisedTrainer) -> PersonalModel:
    """The site's :class:`PersonalModel` (set by :meth:`Ditto.attach_site`)."""
    helper = getattr(trainer, PERSONAL_MODEL, None)
    if helper is None:
        raise RuntimeError("Ditto.attach_site(network, trainer, site_dir=...) has not run on this trainer.")
    return helper


@dataclass(frozen=True, kw_only=True)
class Ditto(Strategy):
    """Ditto: FedAvg for the global model, a personal model per site pulled to it (lambda 0.1).

    Args:
        ditto_lambda: weight of the personal model's pull to the received global weights.

    Raises:
        ValueError: ``ditto_lambda`` is negative.
    """

    name: str = "ditto"
    ditto_lambda: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ditto_lambda < 0:
            raise ValueError(f"ditto_lambda must be >= 0, got {self.ditto_lambda}.")

    def attach_site(self, network: nn.Module, trainer: SupervisedTrainer, *, site_dir: str) -> None:
        setattr(trainer, PERSONAL_MODEL, PersonalModel(trainer, ditto_lambda=self.ditto_lambda, site_dir=site_dir))

    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        super().on_receive(network, trainer, meta)
        personal_model_of(trainer).load_model(network.state_dict())  # v from disk; the received w in round 1

    def evaluation_network(self, network: nn.Module, trainer: SupervisedTrainer) -> nn.Module:
        return personal_model_of(trainer).model

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().before_training(network, trainer)
        personal_model_of(trainer).anchor(network)

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        personal_model_of(trainer).train_after_global()
