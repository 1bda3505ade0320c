"""FedDyn: the site's linear and quadratic terms, its h_i update, and the server's h, by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from omnifm_monai.strategies import STRATEGIES, get_strategy
from omnifm_monai.strategies.feddyn import FedDynAggregator, FedDynLoss


def _toy(values):
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([values]))
    return model


def test_linear_and_quadratic_terms_by_hand():
    # Prepare: x = [1, 1] received, w = [3, 4] after training, g_i = [1, 2], alpha 0.01, a zero task loss
    model = _toy([1.0, 1.0])
    loss = FedDynLoss(task_loss=lambda pred, label: torch.zeros(()), network=model, alpha=0.01)
    loss.linear["weight"] = torch.tensor([[1.0, 2.0]])
    loss.set_reference(model)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0]]))
    # Execute
    value = loss(None, None)
    value.backward()
    # Assert: -<g, w> = -(3 + 8) = -11; alpha/2 ||w - x||^2 = 0.005 * (4 + 9) = 0.065
    assert value.item() == pytest.approx(-11 + 0.065)
    assert loss.linear_term().item() == pytest.approx(-11.0)
    # gradient: -g + alpha (w - x) = [-1 + 0.02, -2 + 0.03]
    np.testing.assert_allclose(model.weight.grad.numpy(), [[-0.98, -1.97]], rtol=1e-6)
    # h_i update: g - alpha (w - x) = [1 - 0.02, 2 - 0.03]
    loss.update_state()
    np.testing.assert_allclose(loss.linear["weight"].numpy(), [[0.98, 1.97]], rtol=1e-6)


def test_server_h_update_by_hand():
    # Prepare: x = [1, 1]; uploads [3, 4] and [1, 0], equal weights, N = 2, alpha 0.01
    aggregator = FedDynAggregator(alpha=0.01)
    global_params = {"w": np.array([1.0, 1.0], np.float32), "bn.num_batches_tracked": np.array(2)}
    aggregator.accept("site-1", {"w": np.array([3.0, 4.0]), "bn.num_batches_tracked": np.array(4)}, weight=1.0,
                      round_num=0)  # fmt: skip
    aggregator.accept("site-2", {"w": np.array([1.0, 0.0]), "bn.num_batches_tracked": np.array(6)}, weight=1.0,
                      round_num=0)  # fmt: skip
    # Execute
    new = aggregator.aggregate(global_params)
    # Assert: h = -alpha/N sum (w_i - x) = -0.005 * [2, 2]; x+ = mean - h / alpha = [2, 2] + [1, 1]
    np.testing.assert_allclose(aggregator.variate["w"], [-0.01, -0.01])
    np.testing.assert_allclose(new["w"], [3.0, 3.0], rtol=1e-6)
    assert new["w"].dtype == np.float32 and int(new["bn.num_batches_tracked"]) == 5  # counters: the mean
    # h survives a restart
    restored = FedDynAggregator(alpha=0.01)
    restored.load_state_dict(aggregator.state_dict(), like=new)
    np.testing.assert_allclose(restored.variate["w"], aggregator.variate["w"])
    assert restored.seen == {"site-1", "site-2"}


def test_site_state_round_trip_and_ill_options():
    # Prepare: the strategy's hooks on a minimal trainer stand-in
    class Trainer:
        network = _toy([1.0, 1.0])
        loss_function = staticmethod(lambda pred, label: torch.zeros(()))

    trainer = Trainer()
    strategy = get_strategy("feddyn")
    strategy.prepare_trainer(trainer)
    trainer.loss_function.linear["weight"] = torch.tensor([[0.5, -0.5]])
    # Execute
    state = strategy.site_state(trainer)
    other = Trainer()
    other.loss_function = staticmethod(lambda pred, label: torch.zeros(()))
    strategy.prepare_trainer(other)
    strategy.load_site_state(other, state)
    # Assert
    np.testing.assert_allclose(other.loss_function.linear["weight"].numpy(), [[0.5, -0.5]])
    assert STRATEGIES["feddyn"].feddyn_alpha == 0.01
    with pytest.raises(ValueError, match="does not match"):
        strategy.load_site_state(other, {"linear.bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="feddyn_alpha"):
        get_strategy("feddyn", feddyn_alpha=0.0)
