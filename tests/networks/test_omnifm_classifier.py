import pytest
import torch

from omnifm_monai import OmniFMClassifier, is_private_key

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


@pytest.mark.parametrize("spectral, prompt", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 32, 32)), (2, (2, 1, 28, 28)), (3, (2, 1, 16, 16, 16))])
def test_forward_backward_no_nan(spectral, prompt, spatial_dims, shape):
    net = OmniFMClassifier(
        spatial_dims=spatial_dims,
        in_channels=shape[1],
        num_classes=5,
        spectral=spectral,
        prompt=prompt,
        **SMALL,
    )
    if spectral:
        net.set_prototypes(torch.randn(7, 64))
    logits = net(torch.rand(shape))
    assert logits.shape == (shape[0], 5) and torch.isfinite(logits).all()
    (logits.sum() + net.spalign_term()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_private_parameters_follow_the_rule():
    private = [k for k in OmniFMClassifier(**SMALL).state_dict() if is_private_key(k)]
    assert sorted(private) == [
        "psp.private_suffix",
        "spectral_memory.private_num_prototypes",
        "spectral_memory.private_prototype_labels",
        "spectral_memory.private_prototypes",
    ]
    assert not [k for k in OmniFMClassifier(spectral=False, prompt=False, **SMALL).state_dict() if is_private_key(k)]


def test_prototypes_reach_the_prediction():
    torch.manual_seed(0)
    net = OmniFMClassifier(num_classes=3, in_channels=1, **SMALL).eval()
    x = torch.rand(2, 1, 32, 32)
    before = net(x)
    net.set_prototypes(torch.randn(4, 64))
    assert not torch.allclose(before, net(x))


def test_plain_network_has_no_spectral_path():
    net = OmniFMClassifier(spectral=False, **SMALL)
    assert net.spalign_term().item() == 0.0
    with pytest.raises(RuntimeError):
        net.set_prototypes(torch.randn(1, 64))


@pytest.mark.parametrize("kwargs", [{"spatial_dims": 1}, {"num_classes": 0}, {"layers": (1, 1)}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        OmniFMClassifier(**kwargs)


def test_trace_matches_eager():
    net = OmniFMClassifier(num_classes=3, **SMALL).eval()
    net.set_prototypes(torch.randn(5, 64))
    x = torch.rand(2, 3, 32, 32)
    traced = torch.jit.trace(net, x)
    torch.testing.assert_close(traced(x), net(x))
