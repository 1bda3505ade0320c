"""FedRep: head epochs with the body frozen, then body epochs with the head frozen (hand-computed SGD)."""

import pytest
import torch
from ignite.engine import Events
from personal_toy import Toy, run_round, toy_trainer

from omnifm_monai.strategies import STRATEGIES, get_strategy


def test_head_then_body_with_momentum():
    # Prepare: pred = h * b * x with b = h = 1, x = 1, y = 0, MSE, SGD lr 0.1 momentum 0.9
    network = Toy()
    trainer = toy_trainer(network, image=[1.0], label=[0.0], momentum=0.9)
    strategy = get_strategy("fedrep", head_epochs=1)
    # Execute: one head epoch, then one body epoch
    run_round(strategy, network, trainer, local_epochs=1)
    # Assert: head epoch: dL/dh = 2 * (1 - 0) * b = 2 -> h = 1 - 0.1 * 2 = 0.8, b untouched;
    # body epoch: dL/db = 2 * (0.8 - 0) * h = 1.28 -> b = 1 - 0.128 = 0.872, h untouched although its
    # momentum buffer holds 2 (a zero gradient would have moved it to 0.8 - 0.1 * 0.9 * 2 = 0.62)
    assert trainer.state.epoch == 2
    assert network.task_head.weight.item() == pytest.approx(0.8)
    assert network.body.weight.item() == pytest.approx(0.872)
    assert all(p.requires_grad for p in network.parameters())  # released after the round


def test_phases_per_round_and_only_the_body_is_shared():
    # Prepare
    network = Toy()
    trainer = toy_trainer(network, image=[1.0], label=[0.0])
    strategy = get_strategy("fedrep", head_epochs=2)
    trainable = []  # the parameters each epoch trained
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: trainable.append({n for n, p in network.named_parameters() if p.requires_grad}),
    )
    # Execute: two rounds of 2 head + 1 body epochs
    run_round(strategy, network, trainer)
    run_round(strategy, network, trainer)
    # Assert
    head, body = {"task_head.weight"}, {"body.weight"}
    assert trainable == [head, head, body] * 2
    assert strategy.private_keys(network) == {"task_head.weight"}
    assert STRATEGIES["fedrep"].head_epochs == 10 and STRATEGIES["fedrep"].round_epochs(1) == 11


def test_ill_options():
    with pytest.raises(ValueError, match="head_epochs"):
        get_strategy("fedrep", head_epochs=0)
    network = torch.nn.Sequential(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="no parameter"):
        get_strategy("fedrep").before_training(network, toy_trainer(network, image=[1.0], label=[0.0]))
