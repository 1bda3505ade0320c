"""Ditto: the global model trains as FedAvg, the personal model is pulled to the received global."""

import pytest
import torch
from personal_toy import Toy, run_round, toy_trainer

from omnifm_monai.strategies import get_strategy
from omnifm_monai.strategies.ditto import personal_model_of


def test_personal_model_pulled_to_the_received_global(tmp_path):
    # Prepare: received w: b = h = 1; the personal model from the last round: v = 0 (on the site's disk);
    # x = 1, y = 0, MSE, SGD lr 0.1, lambda 0.1
    network = Toy()
    trainer = toy_trainer(network, image=[1.0], label=[0.0])
    strategy = get_strategy("ditto")
    strategy.attach_site(network, trainer, site_dir=str(tmp_path))
    personal = personal_model_of(trainer)
    with torch.no_grad():
        for p in personal.model.parameters():
            p.zero_()
    personal.save_model()
    strategy.on_receive(network, trainer, {})
    # Execute
    run_round(strategy, network, trainer)
    # Assert: w as FedAvg: dL/db = dL/dh = 2 * (1 - 0) * 1 = 2 -> 0.8;
    # v: task gradient 2 * (0 - 0) * 0 = 0, pull lambda * (v - w_received) = 0.1 * (0 - 1) -> v = 0.01
    assert [p.item() for p in network.parameters()] == pytest.approx([0.8, 0.8])
    assert [p.item() for p in personal.model.parameters()] == pytest.approx([0.01, 0.01])
    # the site scores its personal model, and v is on its disk for the next round
    assert strategy.evaluation_network(network, trainer) is personal.model
    saved = torch.load(tmp_path / "personalized_model.pt", weights_only=True)["model"]
    assert saved["body.weight"].item() == pytest.approx(0.01)
    assert strategy.private_keys(network) == set()  # w is shared whole; v is not in the network


def test_first_round_personal_model_starts_at_the_received_global(tmp_path):
    network = Toy()
    trainer = toy_trainer(network, image=[1.0], label=[0.0])
    strategy = get_strategy("ditto")
    strategy.attach_site(network, trainer, site_dir=str(tmp_path))
    strategy.on_receive(network, trainer, {})
    assert [p.item() for p in personal_model_of(trainer).model.parameters()] == [1.0, 1.0]


def test_ill_options():
    with pytest.raises(ValueError, match="ditto_lambda"):
        get_strategy("ditto", ditto_lambda=-0.1)
    with pytest.raises(RuntimeError, match="attach_site"):
        get_strategy("ditto").evaluation_network(Toy(), toy_trainer(Toy(), image=[1.0], label=[0.0]))
