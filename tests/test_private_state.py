from omnifm_monai import is_private_key, split_state_dict
from omnifm_monai.private_state import shared_keys


def test_the_private_rule():
    assert is_private_key("psp.private_suffix")
    assert is_private_key("spectral_memory.private_prototypes")
    assert is_private_key("private_head.weight")
    assert not is_private_key("classifier.weight")
    assert not is_private_key("backbone.layer1.0.bn1.weight")
    assert is_private_key("classifier.weight", [r"^classifier\."])


def test_split_keeps_order_and_partitions():
    state = {"a.weight": 1, "psp.private_suffix": 2, "classifier.bias": 3, "b": 4}
    shared, private = split_state_dict(state, [r"^classifier\."])
    assert list(shared) == ["a.weight", "b"]
    assert list(private) == ["psp.private_suffix", "classifier.bias"]
    assert shared_keys(state, [r"^classifier\."]) == ["a.weight", "b"]
