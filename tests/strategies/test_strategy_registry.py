import pytest
from torch import nn

from omnifm_monai import OmniFMClassifier
from omnifm_monai.strategies import STRATEGIES, get_strategy, norm_layer_keys

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


def _network(strategy):
    return OmniFMClassifier(num_classes=3, **SMALL, **strategy.network_options())


def test_registry_has_every_baseline():
    assert set(STRATEGIES) == {
        "fedavg", "fedprox", "fedper", "fedbn", "local", "omnifm", "omnifm_paper",
        "fedadam", "fedyogi", "fedavgm", "scaffold", "feddyn",
        "ditto", "fedrep", "moon", "gpfl",
        "feddg_elcfs", "harmofl",
    }  # fmt: skip


def test_private_keys_per_strategy():
    keys = {name: get_strategy(name).private_keys(_network(get_strategy(name))) for name in STRATEGIES}
    assert keys["fedavg"] == set() and keys["fedprox"] == set()
    assert all(keys[name] == set() for name in ("fedadam", "fedyogi", "fedavgm", "scaffold", "feddyn"))
    assert keys["feddg_elcfs"] == set() and keys["harmofl"] == set()
    assert keys["fedper"] == {"task_head.weight", "task_head.bias"}
    assert keys["omnifm_paper"] == {
        "psp.private_suffix",
        "spectral_memory.private_prototypes",
        "spectral_memory.private_num_prototypes",
        "spectral_memory.private_prototype_labels",
    }
    assert keys["omnifm"] == {"psp.private_suffix"} | keys["fedbn"] | keys["fedper"]  # no spectral bank by default
    spectral = get_strategy("omnifm", spectral=True)
    assert spectral.private_keys(_network(spectral)) == keys["omnifm_paper"] | keys["fedbn"] | keys["fedper"]
    fedbn = keys["fedbn"]
    assert "backbone.bn1.running_mean" in fedbn and "backbone.layer2.0.downsample.1.weight" in fedbn
    assert not any("conv" in k or k.startswith("head") for k in fedbn)
    network = _network(get_strategy("local"))
    assert keys["local"] == set(network.state_dict())


def test_norm_layer_keys_only_normalisation():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.LayerNorm(2))
    assert norm_layer_keys(model) == {
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }


def test_lookup_and_overrides():
    assert get_strategy("FedProx", proximal_mu=0.5).proximal_mu == 0.5
    assert get_strategy("omnifm", private_patterns=(r"^classifier\.",)).private_patterns == (r"^classifier\.",)
    with pytest.raises(ValueError, match="fedavg"):
        get_strategy("fedavgg")
    with pytest.raises(ValueError):
        get_strategy("fedprox", proximal_mu=-1)
