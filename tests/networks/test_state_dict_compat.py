"""Checkpoints saved before the networks were restructured still load and give the same outputs.

``data/state_dict_before.json`` was written by the networks as they were before the spectral-path
options object and the shared ResNet-token backbone (``python tests/networks/test_state_dict_compat.py``
on that code). For each of the five networks, at small sizes and default spectral-path arguments, it
holds:

- ``keys``: every state-dict entry in order, with its shape and dtype, and the float64 sum of its
  value right after ``torch.manual_seed(0)`` construction (the same sums mean the same
  parameter-creation order, so a fixed seed still gives the same initial weights);
- ``output``: the network's output for a fixed input after loading a checkpoint rebuilt from that key
  list (:func:`checkpoint_from_keys`, deterministic values), in eval mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from omnifm_monai.networks import OmniFMClassifier, OmniFMFusion, OmniFMSuperResolution, OmniFMUNet, OmniFMVQA

FIXTURE = Path(__file__).with_name("data") / "state_dict_before.json"
ADDED_SINCE = ("spectral_memory.private_prototype_labels",)
"""Buffers added after the fixture was written; a checkpoint without them loads (their defaults fill in)."""

# only the non-spectral-path arguments: the spectral path keeps its defaults
NETWORKS = {
    "classifier": lambda: OmniFMClassifier(in_channels=1, num_classes=3, layers=(1, 1, 1, 1), channels=(8, 8, 16, 16)),
    "unet": lambda: OmniFMUNet(in_channels=1, num_classes=2, features=(4, 8, 8, 16, 16, 4)),
    "super_resolution": lambda: OmniFMSuperResolution(in_channels=3, scale=2, features=8, num_res_units=1),
    "fusion": lambda: OmniFMFusion(features=(4, 8)),
    "vqa": lambda: OmniFMVQA(
        in_channels=3, num_answers=5, vocab_size=30, max_question_length=6, layers=(1, 1, 1, 1), channels=(8, 8, 16, 16)
    ),
}


def fixed_inputs(name: str) -> tuple[torch.Tensor, ...]:
    """The fixed input of each network (its own generator, so nothing depends on the global seed)."""
    g = torch.Generator().manual_seed(1)
    if name == "classifier":
        return (torch.rand(2, 1, 32, 32, generator=g),)
    if name == "unet":
        return (torch.rand(1, 1, 32, 32, generator=g),)
    if name == "super_resolution":
        return (torch.rand(1, 3, 8, 8, generator=g),)
    if name == "fusion":
        return (torch.rand(1, 2, 16, 16, generator=g),)
    image = torch.rand(2, 3, 32, 32, generator=g)  # (B, C, S, S)
    question = torch.tensor([[5, 7, 9, 0, 0, 0], [11, 3, 0, 0, 0, 0]])  # (B, T), 0 = <pad>
    return image, question


def checkpoint_from_keys(keys: list[list]) -> dict[str, torch.Tensor]:
    """A checkpoint with the saved key list: deterministic values, valid statistics, 4 prototypes."""
    g = torch.Generator().manual_seed(2)
    state = {}
    for key, shape, dtype, _ in keys:
        if dtype == "torch.int64":
            value = torch.full(shape, 4 if key.endswith("private_num_prototypes") else 0, dtype=torch.long)
        elif key.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        else:
            value = 0.1 * torch.randn(shape, generator=g)
        state[key] = value
    return state


def describe(name: str) -> dict:
    """What the fixture records for one network (see the module docstring)."""
    torch.manual_seed(0)
    state = NETWORKS[name]().state_dict()
    keys = [[k, list(v.shape), str(v.dtype), float(v.double().sum())] for k, v in state.items()]
    net = NETWORKS[name]().eval()
    net.load_state_dict(checkpoint_from_keys(keys), strict=True)
    with torch.no_grad():
        output = net(*fixed_inputs(name))
    return {"keys": keys, "output": output.flatten().tolist()}


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_state_dict_keys_and_initial_weights_are_unchanged(name, before):
    now = describe(name)
    added = [k for k in now["keys"] if k[0] in ADDED_SINCE]
    assert [k[:3] for k in added] == [["spectral_memory.private_prototype_labels", [64], "torch.int64"]]
    kept = [k for k in now["keys"] if k[0] not in ADDED_SINCE]
    assert [k[:3] for k in kept] == [k[:3] for k in before[name]["keys"]]
    assert [k[3] for k in kept] == pytest.approx([k[3] for k in before[name]["keys"]], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_checkpoint_saved_before_loads_and_gives_the_same_output(name, before):
    net = NETWORKS[name]().eval()
    net.load_state_dict(checkpoint_from_keys(before[name]["keys"]), strict=True)
    with torch.no_grad():
        output = net(*fixed_inputs(name)).flatten()
    torch.testing.assert_close(output, torch.tensor(before[name]["output"]), rtol=1e-5, atol=1e-6)


if __name__ == "__main__":  # writes the fixture; run only on the code the fixture stands for
    torch.set_num_threads(1)
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({name: describe(name) for name in sorted(NETWORKS)}, indent=None) + "\n")
    sys.exit(0)
