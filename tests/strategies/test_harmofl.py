"""HarmoFL: amplitude normalisation to the site's mean amplitude and the weight-perturbation step."""

import copy

import pytest
import torch
from monai.engines import SupervisedTrainer
from torch import nn

from omnifm_monai.spectral_augment import normalise_low_band
from omnifm_monai.strategies import HarmoFL, WeightPerturbation, get_strategy
from omnifm_monai.strategies.harmofl import site_mean_amplitude

COSINE = torch.cos(torch.arange(4) * torch.pi / 2).expand(4, 4)  # (H, W): frequency +-1 along W, zero mean


def test_normalisation_sets_the_zero_frequency_to_the_site_mean():
    # Prepare: a mean-2 image (zero-frequency amplitude 32 on 4x4) and a site mean amplitude of 16 there
    image = (2 + COSINE).reshape(1, 1, 4, 4)  # (B, C, H, W)
    mean_amplitude = torch.zeros(1, 4, 4)  # (C, H, W), unshifted: the zero frequency at [0, 0]
    mean_amplitude[0, 0, 0] = 16.0
    # Execute
    normalised = normalise_low_band(image, mean_amplitude, band_ratio=0.0)
    # Assert: mean 16 / 16 = 1, the cosine (outside the band) kept
    torch.testing.assert_close(normalised[0, 0], 1 + COSINE)
    with pytest.raises(ValueError, match="mean_amplitude must have shape"):
        normalise_low_band(image, torch.zeros(4, 4), band_ratio=0.0)


def test_weight_perturbation_steps_with_the_gradient_at_the_perturbed_weights():
    # Prepare: loss 0.5 * ||w||^2 at w = (3, 4): g = (3, 4), ||g|| = 5; rho = 1 -> w' = (3.6, 4.8)
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = WeightPerturbation(torch.optim.SGD([w], lr=0.5), closure=lambda: 0.5 * (w**2).sum(), rho=1.0)
    (0.5 * (w**2).sum()).backward()
    # Execute
    optimizer.step()
    # Assert: w - 0.5 * grad(w') = (3, 4) - 0.5 * (3.6, 4.8) = (1.2, 1.6); plain SGD would give (1.5, 2.0)
    torch.testing.assert_close(w.detach(), torch.tensor([1.2, 1.6]))
    assert optimizer.param_groups[0]["lr"] == 0.5  # the rest is the base optimizer's
    with pytest.raises(ValueError, match="rho"):
        WeightPerturbation(torch.optim.SGD([w], lr=0.1), closure=lambda: w.sum(), rho=0.0)


def _trainer(network, images, labels):
    data = [{"image": images, "label": labels}]  # one batch (B, C, H, W), (B,)
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=nn.MSELoss(),
    )


def test_prepare_trainer_normalises_every_input_and_perturbs_each_step():
    # Prepare: two constant images 1 and 3 (zero-frequency amplitudes 16 and 48 -> the site mean is 32)
    images = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 3.0)])  # (2, 1, 4, 4)
    labels = torch.tensor([[1.0], [0.0]])
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    reference = copy.deepcopy(network)
    trainer = _trainer(network, images, labels)
    strategy = get_strategy("harmofl")
    assert site_mean_amplitude(trainer)[0, 0, 0].item() == pytest.approx(32.0)
    # Execute
    strategy.prepare_trainer(trainer)
    trainer.run()
    # Assert: the network sees both images at the site's mean intensity 2 (in training and at evaluation)
    seen = []
    network.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    network(images)
    torch.testing.assert_close(seen[0], torch.full_like(images, 2.0))
    # the step equals a perturbed step by hand on the normalised batch
    normalised = torch.full_like(images, 2.0)
    base = torch.optim.SGD(reference.parameters(), lr=0.1)

    def loss():
        return nn.MSELoss()(reference(normalised), labels)

    manual = WeightPerturbation(base, closure=loss, rho=strategy.perturbation_rho)
    loss().backward()
    manual.step()
    for mine, theirs in zip(network.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs)
    with pytest.raises(ValueError, match="perturbation_rho"):
        HarmoFL(perturbation_rho=-1.0)
