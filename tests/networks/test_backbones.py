"""ResNetTokens: token shapes in 2D/3D, MONAI's key names, stage checks, tracing."""

from __future__ import annotations

import pytest
import torch

from omnifm_monai.networks import ResNetTokens

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


@pytest.mark.parametrize(
    "spatial_dims, shape, stride, length",
    [(2, (2, 3, 32, 32), 1, 4), (2, (2, 1, 64, 64), 2, 4), (3, (1, 1, 32, 32, 32), 1, 8)],
)
def test_tokens_shape(spatial_dims, shape, stride, length):
    net = ResNetTokens(spatial_dims=spatial_dims, in_channels=shape[1], stem_stride=stride, **SMALL)
    tokens = net(torch.rand(shape))
    assert tokens.shape == (shape[0], length, 16) and torch.isfinite(tokens).all()


def test_keys_are_monai_resnet_keys_without_fc():
    keys = ResNetTokens(spatial_dims=2, in_channels=1, stem_stride=1, **SMALL).state_dict()
    assert "conv1.weight" in keys and "layer4.0.conv1.weight" in keys
    assert not any(k.startswith("fc.") for k in keys)


@pytest.mark.parametrize("kwargs", [{"layers": (1, 1)}, {"channels": (8, 8, 16)}])
def test_four_stages_are_required(kwargs):
    with pytest.raises(ValueError, match="4 stages"):
        ResNetTokens(spatial_dims=2, in_channels=1, stem_stride=1, **{**SMALL, **kwargs})


def test_trace_matches_eager():
    net = ResNetTokens(spatial_dims=2, in_channels=3, stem_stride=1, **SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.trace(net, x)(x), net(x))
