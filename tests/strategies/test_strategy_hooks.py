"""The hooks the client and the server call, per strategy, without NVFlare."""

import numpy as np
import pytest
import torch
from torch import nn

from omnifm_monai import OmniFMClassifier
from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.strategies import STRATEGIES, FedAvg, Strategy, WeightedMean, get_strategy

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


def test_server_side_per_strategy():
    uses_kb = {name: s.uses_knowledge_base for name, s in STRATEGIES.items()}
    assert uses_kb == {
        "fedavg": False, "fedprox": False, "fedper": False, "fedbn": False, "local": False,
        "omnifm": False, "omnifm_paper": True,
        "fedadam": False, "fedyogi": False, "fedavgm": False, "scaffold": False, "feddyn": False,
        "ditto": False, "fedrep": False, "moon": False, "gpfl": False,
        "feddg_elcfs": False, "harmofl": False,
    }  # fmt: skip
    assert all(isinstance(s.aggregator(), WeightedMean) for s in STRATEGIES.values())
    # the spectral path is off in omnifm by default (no measured benefit, docs/benchmarks.md), an option
    assert get_strategy("omnifm", spectral=True).uses_knowledge_base


def test_on_receive_sets_the_retrieved_prototypes():
    # Prepare: two prototypes from the server
    network = OmniFMClassifier(num_classes=3, **SMALL)
    prototypes = np.eye(2, network.token_dim, dtype=np.float32)  # (P, d_s)
    # Execute
    get_strategy("omnifm_paper").on_receive(network, None, {MetaKey.PROTOTYPES: prototypes})
    # Assert
    assert int(network.spectral_memory.private_num_prototypes) == 2
    get_strategy("omnifm_paper").on_receive(network, None, {})  # nothing retrieved: an empty bank
    assert int(network.spectral_memory.private_num_prototypes) == 0


def test_spectral_summary_only_with_the_spectral_path():
    network = OmniFMClassifier(num_classes=3, **SMALL)
    images = torch.rand(4, 1, 32, 32)  # (N, C, H, W)
    assert get_strategy("fedavg").spectral_summary(network, images, np.array([0, 0, 1, 1]), seed=0) is None
    assert get_strategy("omnifm").spectral_summary(network, images, np.array([0, 0, 1, 1]), seed=0) is None
    centroids = get_strategy("omnifm", spectral=True).spectral_summary(network, images, np.array([0, 0, 1, 1]), seed=0)
    assert centroids.shape == (2, network.token_dim)  # one unit centroid per group
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)


def test_options_from_json_and_ill_options():
    # Prepare / Execute: JSON gives lists
    strategy = get_strategy("fedbn", private_patterns=["^task_head\\."], recalibrate_norms=True)
    # Assert
    assert isinstance(strategy, type(STRATEGIES["fedbn"])) and strategy.private_patterns == ("^task_head\\.",)
    assert strategy.private_keys(nn.Linear(1, 1)) == set()
    with pytest.raises(ValueError, match="Did you mean 'proximal_mu'"):
        get_strategy("fedprox", proximal_m=0.1)
    with pytest.raises(ValueError, match="private_patterns"):
        FedAvg(private_patterns="^task_head")
    with pytest.raises(TypeError):
        Strategy("positional")  # keyword-only


def test_a_new_strategy_is_one_subclass():
    # Prepare: a FedAvg whose aggregator keeps the global state (a server optimizer with lr 0 would)
    class KeepGlobal(WeightedMean):
        def aggregate(self, global_params):
            return dict(global_params)

    class Frozen(FedAvg):
        def aggregator(self):
            return KeepGlobal()

    # Execute
    aggregator = Frozen(name="frozen").aggregator()
    aggregator.accept("site-1", {"w": np.ones(2)}, weight=1.0, round_num=0)
    # Assert
    np.testing.assert_array_equal(aggregator.aggregate({"w": np.zeros(2)})["w"], 0.0)
