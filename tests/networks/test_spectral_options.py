"""SpectralPathOptions: defaults, the forms a network accepts, field validation, job export."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from omnifm_monai.networks import OmniFMClassifier, OmniFMFusion, SpectralPathOptions

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


def test_defaults_are_the_networks_former_defaults():
    options = SpectralPathOptions()
    assert dataclasses.asdict(options) == {
        "token_dim": 64,
        "cutoff": 0.1,
        "top_k": 4,
        "memory_capacity": 64,
        "num_heads": 4,
        "freeze_tokenizer": False,
    }


def test_frozen_and_keyword_only():
    options = SpectralPathOptions(token_dim=32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.token_dim = 16  # type: ignore[misc]
    with pytest.raises(TypeError):
        SpectralPathOptions(32)  # type: ignore[misc]


@pytest.mark.parametrize("given", [None, {"token_dim": 32, "top_k": 2}, SpectralPathOptions(token_dim=32, top_k=2)])
def test_a_network_takes_an_instance_a_mapping_or_none(given):
    net = OmniFMClassifier(spectral_options=given, **SMALL)
    expected = SpectralPathOptions() if given is None else SpectralPathOptions(token_dim=32, top_k=2)
    assert net.spectral_options == expected
    assert (net.token_dim, net.top_k, net.cutoff) == (expected.token_dim, expected.top_k, expected.cutoff)
    assert net.tokenizer.token_dim == expected.token_dim and net.spectral_memory.top_k == expected.top_k


@pytest.mark.parametrize(
    "field, value",
    [
        ("token_dim", 0),
        ("top_k", 0),
        ("memory_capacity", -1),
        ("num_heads", 0),
        ("num_heads", 2.5),
        ("cutoff", 0.0),
        ("cutoff", 1.5),
        ("cutoff", "0.1"),
        ("freeze_tokenizer", 1),
    ],
)
def test_ill_fields_name_themselves(field, value):
    with pytest.raises(ValueError, match=field):
        SpectralPathOptions(**{field: value})


def test_unknown_keys_and_wrong_types_are_refused():
    with pytest.raises(ValueError, match="token_dims"):
        OmniFMFusion(spectral_options={"token_dims": 16})
    with pytest.raises(TypeError, match="spectral_options"):
        OmniFMFusion(spectral_options=[("token_dim", 16)])


def test_options_are_stored_for_the_job_export():
    """NVFlare's job export reads every constructor argument back from the attribute of its name."""
    net = OmniFMFusion(features=(4, 8), spectral_options={"token_dim": 16, "num_heads": 2})
    assert isinstance(net.spectral_options, SpectralPathOptions)
    assert net.spectral_options == SpectralPathOptions(token_dim=16, num_heads=2)


def test_a_frozen_tokenizer_gets_no_gradient_and_the_rest_trains():
    net = OmniFMClassifier(in_channels=1, num_classes=2, spectral_options={"freeze_tokenizer": True}, **SMALL)
    net.set_prototypes(torch.nn.functional.normalize(torch.rand(3, 64), dim=-1))
    before = {k: v.clone() for k, v in net.tokenizer.state_dict().items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    (net(torch.rand(4, 1, 32, 32)).sum() + net.spalign_term()).backward()
    optimizer.step()
    assert all(p.grad is None for p in net.tokenizer.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.tokenizer.state_dict().items())
    assert net.eca.attention.to_k.weight.grad is not None  # ECA still learns from the task loss
