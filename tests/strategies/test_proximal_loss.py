"""FedProx's proximal term on a one-weight model (hand-computed numbers)."""

import pytest
import torch
from torch import nn

from omnifm_monai.strategies import ProximalLoss, get_strategy


def _one_weight(value):
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_task_loss_plus_mu_half_squared_distance():
    # Prepare: reference w = 1, trained w = 3, mu = 0.5 -> 0.5 / 2 * (3 - 1)^2 = 1
    network = _one_weight(1.0)
    loss = ProximalLoss(task_loss=lambda pred, label: torch.tensor(2.0), network=network, mu=0.5)
    loss.set_reference(network)
    with torch.no_grad():
        network.weight.fill_(3.0)  # local training moves the weight; the reference stays a copy
    # Execute
    value = loss(torch.zeros(1), torch.zeros(1))
    # Assert: task loss 2 + proximal 1
    torch.testing.assert_close(value, torch.tensor(3.0))


def test_ill_arguments():
    with pytest.raises(ValueError, match="mu"):
        ProximalLoss(task_loss=lambda p, t: p, network=_one_weight(0.0), mu=0.0)
    loss = ProximalLoss(task_loss=lambda p, t: p, network=_one_weight(0.0), mu=1.0)
    with pytest.raises(RuntimeError, match="set_reference"):
        loss(torch.zeros(1), torch.zeros(1))


class _Trainer:
    def __init__(self, network):
        self.network, self.loss_function = network, lambda pred, label: torch.tensor(0.0)


def test_fedprox_hooks_wrap_the_loss_and_anchor_it_each_round():
    # Prepare
    network, strategy = _one_weight(1.0), get_strategy("fedprox", proximal_mu=2.0)
    trainer = _Trainer(network)
    # Execute
    strategy.prepare_trainer(trainer)
    strategy.before_training(network, trainer)
    with torch.no_grad():
        network.weight.fill_(2.0)
    # Assert: 2 / 2 * (2 - 1)^2 = 1
    assert isinstance(trainer.loss_function, ProximalLoss)
    torch.testing.assert_close(trainer.loss_function(None, None), torch.tensor(1.0))


def test_strategies_without_the_term_leave_the_loss_alone():
    network = _one_weight(1.0)
    trainer = _Trainer(network)
    task_loss = trainer.loss_function
    get_strategy("fedavg").prepare_trainer(trainer)
    get_strategy("fedavg").before_training(network, trainer)
    assert trainer.loss_function is task_loss
