"""OmniFMVQA: shapes, plain vs spectral, task head, private suffix, gradients, padding, tracing."""

import pytest
import torch

from omnifm_monai import is_private_key
from omnifm_monai.networks import TASK_HEAD, OmniFMVQA

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16), "vocab_size": 30, "max_question_length": 6}


def _inputs(batch=3, channels=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, size, size, generator=g)  # (B, C, S, S)
    question = torch.randint(2, 30, (batch, 6), generator=g)  # (B, T)
    question[:, 4:] = 0  # padding
    return image, question


@pytest.mark.parametrize("spectral, prompt", [(True, True), (False, False), (True, False), (False, True)])
def test_forward_backward_no_nan(spectral, prompt):
    net = OmniFMVQA(in_channels=3, num_answers=7, spectral=spectral, prompt=prompt, **SMALL)
    if spectral:
        net.set_prototypes(torch.randn(5, 64))
    logits = net(*_inputs())
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    (logits.sum() + net.spalign_term()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert isinstance(getattr(net, TASK_HEAD), torch.nn.Linear) and net.task_head.out_features == 7


def test_private_keys_and_plain_baseline():
    private = [k for k in OmniFMVQA(**SMALL).state_dict() if is_private_key(k)]
    assert sorted(private) == [
        "psp.private_suffix",
        "spectral_memory.private_num_prototypes",
        "spectral_memory.private_prototype_labels",
        "spectral_memory.private_prototypes",
    ]
    plain = OmniFMVQA(spectral=False, prompt=False, **SMALL)
    assert not [k for k in plain.state_dict() if is_private_key(k)]
    assert not hasattr(plain, "tokenizer") and plain.spalign_term().item() == 0.0


def test_gradient_reaches_the_spectral_tokenizer_and_the_word_embedding():
    torch.manual_seed(0)
    net = OmniFMVQA(num_answers=4, **SMALL)
    net.set_prototypes(torch.randn(4, 64))
    image, question = _inputs()
    loss = torch.nn.functional.cross_entropy(net(image, question), torch.tensor([0, 1, 2]))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.tokenizer.parameters())
    assert net.word_embedding.weight.grad[question[0, 0]].abs().sum() > 0
    assert net.word_embedding.weight.grad[0].abs().sum() == 0  # <pad> is never trained


def test_the_question_and_the_prototypes_change_the_answer_but_padding_does_not():
    torch.manual_seed(0)
    net = OmniFMVQA(num_answers=5, **SMALL).eval()
    image, question = _inputs()
    with torch.no_grad():
        before = net(image, question)
        other = question.clone()
        other[:, 0] = (other[:, 0] + 1) % 28 + 2
        assert not torch.allclose(before, net(image, other))
        shorter = OmniFMVQA(num_answers=5, **SMALL).eval()
        shorter.load_state_dict(net.state_dict())
        assert torch.allclose(before, shorter(image, question[:, :4]), atol=1e-5)  # trailing padding is ignored
        net.set_prototypes(torch.randn(4, 64))
        assert not torch.allclose(before, net(image, question))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_answers": 0},
        {"vocab_size": 2},
        {"layers": (1, 1)},
        {"spectral_options": {"num_heads": 3}},
        {"max_question_length": 0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        OmniFMVQA(**{**SMALL, **kwargs})


def test_too_long_question_is_rejected():
    net = OmniFMVQA(**SMALL)
    with pytest.raises(ValueError, match="question"):
        net(torch.rand(1, 3, 32, 32), torch.ones(1, 9, dtype=torch.long))


def test_trace_with_both_inputs_matches_eager():
    torch.manual_seed(0)
    net = OmniFMVQA(num_answers=5, **SMALL).eval()
    net.set_prototypes(torch.randn(4, 64))
    traced = torch.jit.trace(net, _inputs(batch=1), check_trace=False)
    image, question = _inputs(batch=4, seed=1)  # another batch size than the trace's
    with torch.no_grad():
        torch.testing.assert_close(traced(image, question), net(image, question), atol=1e-5, rtol=1e-4)
