"""HarmoFL (Jiang et al., AAAI 2022): amplitude normalisation at each site plus weight perturbation.

What we implement: every image the network sees at a site (training, evaluation, the test split) has
the amplitude of its low-frequency window replaced by the site's mean amplitude (a forward pre-hook,
as their ``AmpNorm`` layer is the network's first step); the mean is the exact mean over the site's
training images, computed once when the trainer is prepared (their code keeps a running mean whose
momentum, cast to an integer, is 0: the first batch's mean, averaged over the sites once after round
1). The mean stays at the site: HarmoFL sends nothing beyond the shared weights here. The local
optimizer takes the perturbed step of :class:`~.weight_perturbation.WeightPerturbation` (``rho = 0.05``,
their ``alpha``). Their networks' BatchNorm without affine or running statistics is not copied: every
strategy keeps the bundle's network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from omnifm_monai.spectral_augment import amplitude_phase, check_band_ratio, normalise_low_band
from omnifm_monai.strategies.base import Strategy
from omnifm_monai.strategies.weight_perturbation import WeightPerturbation, trainer_loss_closure

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["AmplitudeNormalisation", "HarmoFL", "site_mean_amplitude"]


@torch.no_grad()
def site_mean_amplitude(trainer: SupervisedTrainer) -> torch.Tensor:
    """The mean unshifted amplitude (C, *S) of every image the trainer's data loader yields, one pass.

    Raises:
        ValueError: the data loader yields no image.
    """
    total, count = None, 0
    for batchdata in trainer.data_loader:
        images = trainer.prepare_batch(batchdata, trainer.state.device, trainer.non_blocking)[0]  # (B, C, *S)
        amplitude = amplitude_phase(images)[0]  # (B, C, *S)
        total = amplitude.sum(0) if total is None else total + amplitude.sum(0)
        count += len(images)
    if not count:
        raise ValueError("the trainer's data_loader yielded no image: no mean amplitude for HarmoFL.")
    return total / count


class AmplitudeNormalisation:
    """A forward pre-hook: the network's first input (B, C, *S) gets the site's low-band amplitude.

    Args:
        mean_amplitude: (C, *S) the site's mean unshifted amplitude.
        band_ratio: the low-frequency window (see :mod:`omnifm_monai.spectral_augment`).
    """

    def __init__(self, mean_amplitude: torch.Tensor, *, band_ratio: float) -> None:
        self.mean_amplitude, self.band_ratio = mean_amplitude, band_ratio

    def __call__(self, module: nn.Module, args: Sequence[Any]) -> tuple:
        return (normalise_low_band(args[0], self.mean_amplitude, band_ratio=self.band_ratio), *args[1:])


@dataclass(frozen=True, kw_only=True)
class HarmoFL(Strategy):
    """FedAvg weights; at the site, amplitude normalisation of every input and the perturbed optimizer step.

    Args:
        band_ratio: the normalised window (their code: 0, the zero frequency alone).
        perturbation_rho: the weight perturbation's radius (their ``alpha``, 0.05).

    Raises:
        ValueError: an option out of range.
    """

    name: str = "harmofl"
    band_ratio: float = 0.0
    perturbation_rho: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check_band_ratio(self.band_ratio)
        if not self.perturbation_rho > 0:
            raise ValueError(f"perturbation_rho must be > 0, got {self.perturbation_rho!r}.")

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        super().prepare_trainer(trainer)
        mean = site_mean_amplitude(trainer)  # (C, *S), before the hook: of the raw images
        trainer.network.register_forward_pre_hook(AmplitudeNormalisation(mean, band_ratio=self.band_ratio))
        trainer.optimizer = WeightPerturbation(
            trainer.optimizer, closure=trainer_loss_closure(trainer), rho=self.perturbation_rho
        )
