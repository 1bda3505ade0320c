"""FedDG-ELCFS (Liu et al., CVPR 2021): sites share low-band amplitude spectra and interpolate with them.

What we implement: each site uploads the low-band amplitude spectra of a fixed sample of its training
images (a fraction ``spectra_fraction``, as their data loader keeps 1/8 of each site's amplitude files);
the server sends each site the other sites' spectra (:class:`~.amplitude_bank.AmplitudeBank`); during
local training each image is, with probability ``interpolation_probability``, replaced by its
continuous frequency-space interpolation with a random bank entry (``lam ~ U(0, 1)``, phase kept,
:func:`~omnifm_monai.spectral_augment.interpolate_low_band`). What we leave out: the episodic
meta-learning (inner step on raw images, outer step on interpolated ones) and the boundary-oriented
contrastive loss, both built on segmentation contours (disc/cup boundaries) and absent from
classification, SR, VQA and fusion; training on raw and interpolated images in one batch keeps the
two terms of their loss in expectation, without the meta-gradient (docs/method.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.spectral_augment import check_band_ratio, interpolate_low_band, low_band_amplitude
from omnifm_monai.strategies.amplitude_bank import AmplitudeBank
from omnifm_monai.strategies.base import Strategy

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["AmplitudeInterpolation", "FedDGELCFS"]

logger = logging.getLogger(__name__)


class AmplitudeInterpolation:
    """A trainer's ``prepare_batch`` whose image part (the first item, (B, C, *S)) is interpolated.

    Args:
        prepare_batch: the bundle's ``prepare_batch`` (its other items, e.g. VQA's question, pass through).
        band_ratio: the low-frequency window (see :mod:`omnifm_monai.spectral_augment`).
        probability: chance that an image is replaced by its interpolation (the others stay raw).
    """

    def __init__(self, prepare_batch: Callable, *, band_ratio: float, probability: float) -> None:
        self.prepare_batch, self.band_ratio, self.probability = prepare_batch, band_ratio, probability
        self.bank: torch.Tensor | None = None  # (M, C, *W) other sites' amplitudes

    def set_bank(self, bank: np.ndarray | None) -> None:
        """The other sites' low-band amplitudes (M, C, *W) from the server; None or empty: no interpolation."""
        self.bank = None if bank is None or len(bank) == 0 else torch.as_tensor(np.asarray(bank, np.float32))

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> tuple:
        batch = self.prepare_batch(batchdata, device, non_blocking, **kwargs)
        if self.bank is None:
            return batch
        images = batch[0]  # (B, C, *S)
        b, spatial = images.shape[0], tuple(range(2, images.ndim))
        other = self.bank[torch.randint(len(self.bank), (b,))]  # (B, C, *W)
        mixed = interpolate_low_band(images, other, torch.rand(b), band_ratio=self.band_ratio)
        low, high = images.amin(dim=spatial, keepdim=True), images.amax(dim=spatial, keepdim=True)  # (B, C, 1, ...)
        mixed = torch.maximum(torch.minimum(mixed, high), low)  # each image's own intensity range, as their clip
        chosen = (torch.rand(b) < self.probability).to(images.device).reshape(-1, *[1] * (images.ndim - 1))
        return (torch.where(chosen, mixed, images), *batch[1:])


@dataclass(frozen=True, kw_only=True)
class FedDGELCFS(Strategy):
    """FedAvg weights, plus the amplitude bank and the local frequency-space interpolation.

    Args:
        band_ratio: the window's half-width as a fraction of the image side (their demo: 0.003; their
            training loader: 0; at 32-384 px both give the zero frequency alone or a 3x3 window).
        interpolation_probability: chance an image of a training batch is interpolated.
        spectra_fraction: the share of the site's training images whose spectra it uploads (theirs: 1/8).
        max_spectra: most spectra one site uploads and the server sends one site (the server's size cap).

    Raises:
        ValueError: an option out of range.
    """

    name: str = "feddg_elcfs"
    band_ratio: float = 0.003
    interpolation_probability: float = 0.5
    spectra_fraction: float = 0.125
    max_spectra: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check_band_ratio(self.band_ratio)
        if not 0.0 <= self.interpolation_probability <= 1.0:
            raise ValueError(f"interpolation_probability must be in [0, 1], got {self.interpolation_probability!r}.")
        if not 0.0 < self.spectra_fraction <= 1.0:
            raise ValueError(f"spectra_fraction must be in (0, 1], got {self.spectra_fraction!r}.")
        if self.max_spectra < 1:
            raise ValueError(f"max_spectra must be >= 1, got {self.max_spectra!r}.")

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        super().prepare_trainer(trainer)
        trainer.prepare_batch = AmplitudeInterpolation(
            trainer.prepare_batch, band_ratio=self.band_ratio, probability=self.interpolation_probability
        )

    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        super().on_receive(network, trainer, meta)
        augment = getattr(trainer, "prepare_batch", None)
        if isinstance(augment, AmplitudeInterpolation):
            augment.set_bank(meta.get(MetaKey.AMPLITUDE_BANK))
            count = 0 if augment.bank is None else len(augment.bank)
            logger.info(f"feddg_elcfs: {count} amplitude spectra of other sites in the bank")

    def upload_indices(self, num_images: int, *, seed: int) -> torch.Tensor:
        """Which of the site's images have their spectra uploaded: a fixed seeded sample (M,), sorted."""
        m = min(num_images, self.max_spectra, max(1, math.floor(num_images * self.spectra_fraction)))
        return torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))[:m].sort().values

    @torch.no_grad()
    def upload_meta(
        self, network: nn.Module, trainer: SupervisedTrainer, images: torch.Tensor, *, seed: int
    ) -> dict[str, Any]:
        """The low-band amplitudes (M, C, *W) of a fixed seeded sample of the site's images (N, C, *S)."""
        pick = self.upload_indices(len(images), seed=seed)
        amplitudes = low_band_amplitude(images[pick].float(), self.band_ratio)  # (M, C, *W)
        return {MetaKey.AMPLITUDE_SPECTRA: amplitudes.numpy().astype(np.float32)}

    def aggregator(self) -> AmplitudeBank:
        return AmplitudeBank(max_rows=self.max_spectra, max_bank=self.max_spectra)
