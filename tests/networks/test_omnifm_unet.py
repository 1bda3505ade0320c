"""OmniFMUNet: shapes in 2D/3D, plain vs OmniFM, the task head, the private suffix and gradients."""

import pytest
import torch

from omnifm_monai import is_private_key
from omnifm_monai.networks import TASK_HEAD, OmniFMUNet

SMALL = {"features": (4, 8, 8, 16, 16, 4), "spectral_options": {"num_heads": 2, "token_dim": 16}}


@pytest.mark.parametrize("spectral, prompt", [(True, True), (False, False)])
@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 32, 32)), (2, (2, 3, 48, 48)), (3, (1, 1, 32, 32, 32))])
def test_forward_shapes_and_finite_gradients(spectral, prompt, spatial_dims, shape):
    net = OmniFMUNet(
        spatial_dims=spatial_dims, in_channels=shape[1], num_classes=5, spectral=spectral, prompt=prompt, **SMALL
    )
    if spectral:
        net.set_prototypes(torch.randn(6, 16))
    logits = net(torch.rand(shape))
    assert logits.shape == (shape[0], 5, *shape[2:]) and torch.isfinite(logits).all()
    (logits.mean() + net.spalign_term()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_task_head_is_the_last_1x1_convolution():
    net = OmniFMUNet(num_classes=4, **SMALL)
    head = getattr(net, TASK_HEAD)
    assert isinstance(head, torch.nn.Conv2d) and head.out_channels == 4 and head.kernel_size == (1, 1)
    assert any(k.startswith("task_head.") for k in net.state_dict())


def test_private_keys_only_with_the_omnifm_path():
    private = sorted(k for k in OmniFMUNet(**SMALL).state_dict() if is_private_key(k))
    assert "psp.private_suffix" in private
    assert not [k for k in OmniFMUNet(spectral=False, prompt=False, **SMALL).state_dict() if is_private_key(k)]


def test_gradients_reach_the_tokenizer_from_the_task_loss():
    torch.manual_seed(0)
    net = OmniFMUNet(in_channels=1, num_classes=3, **SMALL)
    net.set_prototypes(torch.randn(4, 16))
    net(torch.rand(2, 1, 32, 32)).square().mean().backward()  # the task output only, no SPAlign
    grads = [p.grad for p in net.tokenizer.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_prototypes_change_the_prediction():
    torch.manual_seed(0)
    net = OmniFMUNet(in_channels=1, num_classes=3, **SMALL).eval()
    x = torch.rand(2, 1, 32, 32)
    before = net(x)
    net.set_prototypes(torch.randn(4, 16))
    assert not torch.allclose(before, net(x))


def test_constructor_arguments_are_stored():
    net = OmniFMUNet(spatial_dims=2, in_channels=2, num_classes=3, dropout=0.1, **SMALL)
    assert (net.in_channels, net.num_classes, net.features, net.dropout) == (2, 3, [4, 8, 8, 16, 16, 4], 0.1)
    assert (net.spectral, net.prompt, net.token_dim, net.num_heads) == (True, True, 16, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 1},
        {"num_classes": 0},
        {"features": (4, 8, 8)},
        {"features": (4, 8, 8, 16, 15, 4), "spectral_options": {"num_heads": 2}},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        OmniFMUNet(**{**SMALL, **kwargs})
