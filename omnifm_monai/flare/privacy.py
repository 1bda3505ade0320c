"""Differential privacy for the spectral upload: an NVFlare task-result filter on ``FLModel.meta``.

NVFlare's own privacy filters (``PercentilePrivacy``, ``SVTPrivacy``) act on weights only; the
spectral centroids travel in the result's meta, so they need this filter. Each uploaded row is
clipped to L2 norm ``clip`` and gets Gaussian noise of standard deviation ``noise_multiplier *
sensitivity`` per coordinate, then is re-normalised (post-processing, free under DP).

Accounting (worst case, stated plainly): one image changes at most one row (its class centroid),
and that row can move anywhere in the clipping ball, so the L2 sensitivity is ``2 * clip``. The
classic Gaussian mechanism then gives, per round, ``epsilon = sqrt(2 ln(1.25 / delta)) /
noise_multiplier`` (valid for epsilon <= 1), and rounds compose additively (basic composition).
A tighter bound would use the class sizes; this one needs no information from the site's data.
"""

from __future__ import annotations

import math

import numpy as np
from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from omnifm_monai.flare.constants import MetaKey

__all__ = ["SpectralTokenPrivacy", "gaussian_epsilon"]


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Epsilon of one Gaussian-mechanism release with noise ``noise_multiplier`` x sensitivity."""
    if noise_multiplier <= 0 or not 0 < delta < 1:
        raise ValueError(f"need noise_multiplier > 0 and 0 < delta < 1, got {noise_multiplier} and {delta}.")
    return math.sqrt(2 * math.log(1.25 / delta)) / noise_multiplier


class SpectralTokenPrivacy(Filter):
    """Clip and noise the spectral tokens a site uploads; record the (epsilon, delta) spent.

    Args:
        noise_multiplier: noise standard deviation in units of the sensitivity ``2 * clip``; the
            Gaussian-mechanism bound needs it >= sqrt(2 ln(1.25/delta)) (epsilon <= 1 per round).
        clip: L2 norm each row is clipped to.
        delta: the delta of the (epsilon, delta) guarantee.
        seed: seed of the noise (None: fresh entropy, what a deployment wants).
    """

    def __init__(self, noise_multiplier: float = 5.0, clip: float = 1.0, delta: float = 1e-5, seed: int | None = None):
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}.")
        self.epsilon_per_round = gaussian_epsilon(noise_multiplier, delta)
        if self.epsilon_per_round > 1:
            raise ValueError(
                f"noise_multiplier={noise_multiplier} gives epsilon {self.epsilon_per_round:.2f} > 1 per round, "
                f"outside the Gaussian-mechanism bound; use >= {math.sqrt(2 * math.log(1.25 / delta)):.2f}."
            )
        self.noise_multiplier = noise_multiplier
        self.clip = clip
        self.delta = delta
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._rounds = 0

    def privatize(self, tokens: np.ndarray) -> np.ndarray:
        """(N, d) rows -> clipped, noised, re-normalised (N, d) float32."""
        rows = np.asarray(tokens, dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        clipped = rows * np.minimum(1.0, self.clip / np.maximum(norms, 1e-12))
        noisy = clipped + self._rng.normal(0.0, self.noise_multiplier * 2 * self.clip, size=rows.shape)
        return (noisy / np.maximum(np.linalg.norm(noisy, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo = from_shareable(shareable)
        tokens = dxo.meta.get(MetaKey.TOKENS)
        if tokens is None:
            return shareable
        dxo.meta[MetaKey.TOKENS] = self.privatize(tokens)
        self._rounds += 1
        dxo.meta[MetaKey.DP_EPSILON] = [self.epsilon_per_round, self.epsilon_per_round * self._rounds, self.delta]
        return dxo.update_shareable(shareable)
