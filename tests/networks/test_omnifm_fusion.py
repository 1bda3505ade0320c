"""OmniFMFusion: shapes and range, plain vs spectral, the task head, private suffix, gradients."""

from __future__ import annotations

import pytest
import torch

from omnifm_monai.losses import FusionLoss
from omnifm_monai.networks import TASK_HEAD, OmniFMFusion

TINY = {"features": (4, 8), "spectral_options": {"token_dim": 16, "num_heads": 2, "memory_capacity": 8}}


@pytest.mark.parametrize("spectral", [True, False])
def test_output_shape_and_range_2d(spectral):
    net = OmniFMFusion(spectral=spectral, prompt=spectral, **TINY)
    with torch.no_grad():
        fused = net(torch.rand(3, 2, 16, 24))  # non-square
    assert fused.shape == (3, 1, 16, 24)
    assert torch.isfinite(fused).all() and fused.min() >= 0.0 and fused.max() <= 1.0


def test_output_shape_3d():
    net = OmniFMFusion(spatial_dims=3, **TINY)
    with torch.no_grad():
        assert net(torch.rand(1, 2, 8, 8, 8)).shape == (1, 1, 8, 8, 8)


def test_prototypes_change_the_spectral_output():
    torch.manual_seed(0)
    net = OmniFMFusion(**TINY).eval()
    x = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        before = net(x)
        net.set_prototypes(torch.randn(5, 16))
        after = net(x)
    assert not torch.allclose(before, after)


def test_plain_network_has_no_spectral_path_and_task_head_is_present():
    plain = OmniFMFusion(spectral=False, prompt=False, **TINY)
    full = OmniFMFusion(spectral=True, prompt=True, **TINY)
    assert not any(k.startswith(("tokenizer", "eca", "spectral_memory")) for k in plain.state_dict())
    assert not any("private" in k for k in plain.state_dict())
    for net in (plain, full):
        assert isinstance(getattr(net, TASK_HEAD), torch.nn.Module)
        assert getattr(net, TASK_HEAD).out_channels == 1
    assert "psp.private_suffix" in full.state_dict()
    assert any(k.startswith("tokenizer.") for k in full.state_dict())
    assert any(k.startswith("spectral_memory.private_prototypes") for k in full.state_dict())
    # every constructor argument is kept under its own name
    assert (full.spatial_dims, full.in_channels, full.features, full.token_dim, full.num_heads) == (2, 2, [4, 8], 16, 2)
    assert (full.cutoff, full.top_k, full.memory_capacity, full.spectral, full.prompt) == (0.1, 4, 8, True, True)


def test_gradients_reach_tokenizer_eca_suffix_and_head():
    torch.manual_seed(0)
    net = OmniFMFusion(**TINY)
    net.set_prototypes(torch.randn(4, 16))
    sources = torch.rand(2, 2, 16, 16)
    loss = FusionLoss()(net(sources), sources) + net.spalign_term()
    loss.backward()
    for prefix in ("tokenizer.", "eca.", "psp.private_suffix", "mixer.", "encoder.", "decoder.", f"{TASK_HEAD}."):
        grads = [p.grad for k, p in net.named_parameters() if k.startswith(prefix)]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), prefix


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"features": ()}, "features"),
        ({"features": (4, 6), "spectral_options": {"num_heads": 4}}, "num_heads"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OmniFMFusion(**{**TINY, **kwargs})


def test_bad_inputs_are_named():
    net = OmniFMFusion(**TINY)
    with pytest.raises(ValueError, match="expected sources"):
        net(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible by 4"):  # two stages: /2 (stage 2) and /2 (embedding)
        net(torch.rand(1, 2, 10, 16))
