import pytest
import torch

from omnifm_monai import PrefixSuffixPrompt, is_private_key


def test_sequence_is_prefix_tokens_suffix():
    psp = PrefixSuffixPrompt(hidden_size=4, num_suffix_tokens=2)
    z, r = torch.zeros(3, 5, 4), torch.ones(3, 5, 4)
    out = psp(z, r)
    assert out.shape == (3, 12, 4)
    assert torch.equal(out[:, :5], z) and torch.equal(out[:, 5:10], r)
    assert torch.equal(out[0, 10:], psp.private_suffix[0])


def test_suffix_is_private_and_trainable():
    psp = PrefixSuffixPrompt(hidden_size=4)
    assert [k for k in psp.state_dict() if is_private_key(k)] == ["private_suffix"]
    psp(torch.rand(1, 2, 4), torch.rand(1, 2, 4)).sum().backward()
    assert psp.private_suffix.grad is not None


@pytest.mark.parametrize("use_prefix, use_suffix, length", [(False, True, 3), (True, False, 4), (False, False, 2)])
def test_ablations(use_prefix, use_suffix, length):
    psp = PrefixSuffixPrompt(hidden_size=4, use_prefix=use_prefix, use_suffix=use_suffix)
    assert psp(torch.rand(1, 2, 4), torch.rand(1, 2, 4)).shape == (1, length, 4)
    assert ("private_suffix" in psp.state_dict()) == use_suffix


def test_bad_arguments():
    with pytest.raises(ValueError):
        PrefixSuffixPrompt(hidden_size=0)
    with pytest.raises(ValueError, match="tokens"):
        PrefixSuffixPrompt(hidden_size=4)(torch.rand(1, 2, 4), torch.rand(1, 2, 3))
