"""GPFL: the global/personal feature split through CoV, its guidance terms, and what it shares."""

import math

import pytest
import torch
from torch import nn

from omnifm_monai import OmniFMClassifier
from omnifm_monai.strategies import get_strategy
from omnifm_monai.strategies.gpfl import GlobalPersonalSplit, class_frequencies

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


class _Zero(nn.Module):
    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(c)


def _split_with_identity_valve():
    """F = 2, C = 2, GCE rows e1 and e2; the valve's networks replaced by gamma(c) = c and beta(c) = 0."""
    split = GlobalPersonalSplit(feature_dim=2, num_classes=2)
    with torch.no_grad():
        split.gce.weight.copy_(torch.eye(2))
    split.gamma, split.beta = nn.Identity(), _Zero()
    return split


def test_personal_and_global_features_by_hand():
    # Prepare: the site holds 3 of class 0 and 1 of class 1 -> p = 0.75 e1 + 0.25 e2; g = 0.5 e1 + 0.5 e2
    split = _split_with_identity_valve()
    split.set_conditions(class_frequencies([0, 0, 0, 1], 2))
    head = nn.Linear(2, 2, bias=False)
    head.register_forward_pre_hook(split.route)
    head.weight.data = torch.eye(2)
    f = torch.tensor([[2.0, -4.0]])  # (B, F)
    # Execute
    split.train()
    f_personal = head(f)  # the head sees f_P
    # Assert: f_P = relu(f * (1 + p)) = relu([3.5, -5]) = [3.5, 0]; f_G = relu(f * (1 + g)) = [3, 0]
    assert f_personal.tolist() == [[3.5, 0.0]]
    assert split.last_global_features.tolist() == [[3.0, 0.0]]
    # guidance for label 0: angle = CE(cosines [1, 0]) = log(1 + e^-1); magnitude ||[3, 0] - e1||^2 = 4
    guidance = split.guidance(torch.tensor([0]), magnitude_weight=0.01)
    assert guidance.item() == pytest.approx(math.log(1 + math.exp(-1)) + 0.01 * 4, rel=1e-5)
    split.eval()
    head(f)
    assert split.last_global_features is None  # f_G only while training


def test_split_in_the_network_shared_and_private_keys():
    # Prepare
    network = OmniFMClassifier(num_classes=3, spectral=False, prompt=False, **SMALL)
    strategy = get_strategy("gpfl")
    # Execute
    strategy.extend_network(network)
    private = strategy.private_keys(network)
    logits = network(torch.rand(2, 3, 32, 32))  # (B, C, H, W)
    # Assert: the head and the conditional inputs stay home; CoV and GCE are shared
    assert logits.shape == (2, 3)
    assert {"task_head.weight", "task_head.bias", "gpfl.private_personal_condition"} <= private
    shared = set(network.state_dict()) - private
    assert {"gpfl.gce.weight", "gpfl.gamma.0.weight", "gpfl.beta.0.weight"} <= shared
    assert not any(k.startswith("task_head") or "private" in k for k in shared)


def test_server_initial_params_gain_the_shared_modules():
    # Prepare: the persisted model is the bundle's network without GPFL's modules (NVFlare's job export)
    plain = OmniFMClassifier(num_classes=3, spectral=False, prompt=False, **SMALL)
    extended = OmniFMClassifier(num_classes=3, spectral=False, prompt=False, **SMALL)
    strategy = get_strategy("gpfl")
    strategy.extend_network(extended)
    # Execute
    params = strategy.initial_params({k: v.numpy() for k, v in plain.state_dict().items()})
    # Assert: the same keys and shapes as a site's network
    assert {k: v.shape for k, v in params.items()} == {k: tuple(v.shape) for k, v in extended.state_dict().items()}
    assert strategy.initial_params(params).keys() == params.keys()  # already there: unchanged


def test_ill_inputs():
    with pytest.raises(ValueError, match="Linear"):
        get_strategy("gpfl").extend_network(nn.Sequential(nn.Conv2d(1, 1, 1)))
    with pytest.raises(ValueError, match=r"classes in \[0, 2\)"):
        class_frequencies([0, 2], 2)
    with pytest.raises(ValueError, match="magnitude_weight"):
        get_strategy("gpfl", magnitude_weight=-1.0)
