"""OmniFMSuperResolution: shapes per scale, plain vs spectral, the task head, private keys, gradients."""

from __future__ import annotations

import pytest
import torch

from omnifm_monai.networks import TASK_HEAD, OmniFMSuperResolution
from omnifm_monai.networks.omnifm_super_resolution import bicubic_upsample

TINY = {"features": 8, "num_res_units": 1, "spectral_options": {"token_dim": 16, "num_heads": 2, "memory_capacity": 8}}


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("spectral", [True, False])
def test_output_shape_2d(scale, spectral):
    net = OmniFMSuperResolution(scale=scale, spectral=spectral, prompt=spectral, **TINY)
    lr = torch.rand(2, 3, 8, 12)  # non-square, not divisible by the embedding stride
    with torch.no_grad():
        sr = net(lr)
    assert sr.shape == (2, 3, 8 * scale, 12 * scale)
    assert torch.isfinite(sr).all()


def test_output_shape_3d_gray():
    net = OmniFMSuperResolution(spatial_dims=3, in_channels=1, scale=2, **TINY)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 8, 8, 8)).shape == (1, 1, 16, 16, 16)


def test_untrained_network_is_close_to_bicubic():
    net = OmniFMSuperResolution(scale=2, **TINY)
    lr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        gap = (net(lr) - bicubic_upsample(lr, 2)).abs().max()
    assert gap < 0.05  # the global residual plus a near-zero head


def test_plain_network_has_no_spectral_path_and_task_head_is_present():
    plain = OmniFMSuperResolution(spectral=False, prompt=False, **TINY)
    full = OmniFMSuperResolution(spectral=True, prompt=True, **TINY)
    assert not any(k.startswith(("tokenizer", "eca", "spectral_memory")) for k in plain.state_dict())
    assert not any("private" in k for k in plain.state_dict())
    for net in (plain, full):
        assert isinstance(getattr(net, TASK_HEAD), torch.nn.Module)
        assert any(k.startswith(f"{TASK_HEAD}.") for k in net.state_dict())
    assert "psp.private_suffix" in full.state_dict()
    assert any(k.startswith("tokenizer.") for k in full.state_dict())
    # every constructor argument is kept under its own name
    assert (full.scale, full.features, full.num_res_units, full.token_dim) == (2, 8, 1, 16)


def test_gradients_reach_tokenizer_eca_and_suffix():
    torch.manual_seed(0)
    net = OmniFMSuperResolution(scale=2, **TINY)
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    loss = torch.nn.functional.l1_loss(net(lr), hr) + net.spalign_term()
    loss.backward()
    for prefix in ("tokenizer.", "eca.", "psp.private_suffix", "mixer.", "encoder."):
        grads = [p.grad for k, p in net.named_parameters() if k.startswith(prefix)]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), prefix


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": 3}, {"spatial_dims": 1}, {"features": 6, "spectral_options": {"num_heads": 5}}, {"num_res_units": -1}],
)
def test_bad_arguments_raise(kwargs):
    args = {**TINY, **kwargs}
    with pytest.raises(ValueError):
        OmniFMSuperResolution(**args)


def test_wrong_input_rank_is_refused():
    with pytest.raises(ValueError, match="spatial axes"):
        OmniFMSuperResolution(**TINY)(torch.rand(1, 3, 8, 8, 8))


def test_trace_accepts_another_batch_size():
    net = OmniFMSuperResolution(**TINY).eval()
    traced = torch.jit.trace(net, torch.rand(1, 3, 8, 8))
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), atol=1e-5, rtol=1e-4)
