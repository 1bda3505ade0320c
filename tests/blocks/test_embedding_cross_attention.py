import pytest
import torch

from omnifm_monai import EmbeddingCrossAttention


@pytest.mark.parametrize("batch, length, k", [(2, 16, 5), (1, 1, 1), (3, 4, 0)])
def test_shapes_and_gradients(batch, length, k):
    eca = EmbeddingCrossAttention(hidden_size=32, token_dim=16, num_heads=4)
    r = torch.rand(batch, length, 32, requires_grad=True)
    s_g = torch.rand(batch, k, 16)
    z = eca(r, s_g)
    assert z.shape == (batch, length, 32)
    z.sum().backward()
    assert torch.isfinite(r.grad).all()


def test_no_prototypes_returns_the_tokens():
    eca = EmbeddingCrossAttention(hidden_size=8, token_dim=4, num_heads=2)
    r = torch.rand(2, 3, 8)
    assert torch.equal(eca(r, torch.zeros(2, 0, 4)), r)


def test_prototypes_change_the_output():
    torch.manual_seed(0)
    eca = EmbeddingCrossAttention(hidden_size=8, token_dim=4, num_heads=2)
    r = torch.rand(1, 3, 8)
    assert not torch.allclose(eca(r, torch.rand(1, 2, 4)), eca(r, torch.rand(1, 2, 4)))


@pytest.mark.parametrize("kwargs", [{"hidden_size": 0}, {"token_dim": 0}, {"num_heads": 3}])
def test_bad_arguments(kwargs):
    args = {"hidden_size": 8, "token_dim": 4, "num_heads": 2, **kwargs}
    with pytest.raises(ValueError):
        EmbeddingCrossAttention(**args)


def test_bad_inputs():
    eca = EmbeddingCrossAttention(hidden_size=8, token_dim=4, num_heads=2)
    with pytest.raises(ValueError, match="tokens"):
        eca(torch.rand(2, 3, 7), torch.rand(2, 1, 4))
    with pytest.raises(ValueError, match="prototypes"):
        eca(torch.rand(2, 3, 8), torch.rand(1, 1, 4))
