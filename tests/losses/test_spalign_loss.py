import pytest
import torch

from omnifm_monai import OmniFMClassifier, OmniFMLoss, spalign_loss


def test_spalign_hand_computed():
    # s = (1, 0); prototypes (0, 1) and (0, -1) -> mean (0, 0) -> ||s||^2 = 1; second sample 0
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s_g = torch.tensor([[[0.0, 1.0], [0.0, -1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    assert spalign_loss(s, s_g).item() == pytest.approx(0.5)


def test_spalign_zero_without_prototypes_and_differentiable():
    s = torch.rand(3, 4, requires_grad=True)
    assert spalign_loss(s, torch.zeros(3, 0, 4)).item() == 0.0
    spalign_loss(s, torch.rand(3, 2, 4)).backward()
    assert s.grad is not None


def test_spalign_bad_shapes():
    with pytest.raises(ValueError):
        spalign_loss(torch.rand(3, 4), torch.rand(2, 1, 4))
    with pytest.raises(ValueError, match="widths"):
        spalign_loss(torch.rand(3, 4), torch.rand(3, 1, 5))


def test_omnifm_loss_adds_weighted_spalign():
    torch.manual_seed(0)
    net = OmniFMClassifier(num_classes=3, in_channels=1, layers=(1, 1, 1, 1), channels=(8, 8, 16, 16))
    net.set_prototypes(torch.randn(6, 64))
    task = torch.nn.CrossEntropyLoss()
    pred, label = net(torch.rand(4, 1, 32, 32)), torch.tensor([0, 1, 2, 0])
    expected = task(pred, label) + 0.5 * net.spalign_term()
    torch.testing.assert_close(OmniFMLoss(task, net, spalign_weight=0.5)(pred, label), expected)
    assert net.spalign_term().item() > 0


def test_omnifm_loss_checks():
    with pytest.raises(ValueError):
        OmniFMLoss(torch.nn.CrossEntropyLoss(), OmniFMClassifier(), spalign_weight=-1)
    with pytest.raises(TypeError, match="spalign_term"):
        OmniFMLoss(torch.nn.CrossEntropyLoss(), torch.nn.Linear(2, 2))
