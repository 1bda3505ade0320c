"""MOON: the model-contrastive term by hand, and the loss the trainer sees."""

import math

import pytest
import torch
from personal_toy import Toy, toy_trainer

from omnifm_monai.strategies import get_strategy
from omnifm_monai.strategies.moon import ModelContrastiveLoss, model_contrastive_term


def test_contrastive_term_by_hand():
    # Prepare: row 1 is the global representation, orthogonal to the previous; row 2 is equally close to both
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z_global = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z_previous = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # Execute
    term = model_contrastive_term(z, z_global, z_previous, temperature=0.5)
    # Assert: row 1: -log(e^2 / (e^2 + e^0)) = log(1 + e^-2); row 2: cosines equal -> log 2
    assert term.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2)


def _set_body(network, rows):
    with torch.no_grad():
        network.body.weight.copy_(torch.tensor(rows))


def test_trainer_loss_uses_the_global_and_the_previous_representation(tmp_path):
    # Prepare: features z = body(x) with x = (1, 1); the head sums them; target 1
    network = Toy(features=2)
    trainer = toy_trainer(network, image=[[1.0, 1.0]], label=[[1.0]])
    strategy = get_strategy("moon")  # mu 5, temperature 0.5
    strategy.attach_site(network, trainer, site_dir=str(tmp_path))
    _set_body(network, [[0.0, 0.0], [0.0, 1.0]])  # last round's local model: z_prev = (0, 1)
    strategy.after_training(network, trainer)
    _set_body(network, [[1.0, 0.0], [0.0, 0.0]])  # this round's received model: z_glob = (1, 0)
    strategy.before_training(network, trainer)
    # Execute: the local model still equals the received one, so z = (1, 0) and pred = 1
    x = torch.tensor([[1.0, 1.0]])
    loss = trainer.loss_function(network(x), torch.tensor([[1.0]]))
    # Assert: task 0 + 5 * log(1 + e^-2)
    assert loss.item() == pytest.approx(5 * math.log(1 + math.exp(-2)), rel=1e-5)
    # the previous model survives a client restart (a new loss over the same site folder)
    restarted = ModelContrastiveLoss(
        task_loss=torch.nn.MSELoss(), network=Toy(features=2), mu=5.0, temperature=0.5,
        previous_path=str(tmp_path / "moon_previous.pt"),
    )  # fmt: skip
    assert restarted.has_previous


def test_first_round_previous_is_the_received_model(tmp_path):
    # Prepare: no previous model on disk
    network = Toy(features=2)
    trainer = toy_trainer(network, image=[[1.0, 1.0]], label=[[4.0]])
    strategy = get_strategy("moon", moon_mu=1.0)
    strategy.attach_site(network, trainer, site_dir=str(tmp_path))
    strategy.before_training(network, trainer)
    # Execute
    loss = trainer.loss_function(network(torch.tensor([[1.0, 1.0]])), torch.tensor([[4.0]]))
    # Assert: all-ones weights: z = (2, 2), pred = 4 -> task 0; z = z_glob = z_prev -> log 2
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)


def test_ill_options():
    with pytest.raises(ValueError, match="temperature"):
        get_strategy("moon", temperature=0.0)
    with pytest.raises(ValueError, match="moon_mu"):
        get_strategy("moon", moon_mu=-1.0)
