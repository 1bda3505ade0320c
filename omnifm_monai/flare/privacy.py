"""Differential privacy for the spectral upload: an NVFlare task-result filter on ``FLModel.meta``.

NVFlare's own privacy filters (``PercentilePrivacy``, ``SVTPrivacy``) act on weights only; the
spectral centroids travel in the result's meta, so they need this filter. Each uploaded row is
clipped to L2 norm ``clip`` and gets Gaussian noise of standard deviation ``noise_multiplier *
sensitivity`` per coordinate, then is re-normalised (post-processing, free under DP).

Accounting (worst case, stated plainly): one image changes at most one row (its class centroid),
and that row can move anywhere in the clipping ball, so the L2 sensitivity is ``2 * clip``. Each
round is one Gaussian-mechanism release of noise ``noise_multiplier`` (sampling rate 1: every
round the site uploads). Two bounds of the rounds so far are kept, both valid:

- basic composition: ``rounds * sqrt(2 ln(1.25 / delta)) / noise_multiplier`` (the classic
  Gaussian-mechanism bound, valid for epsilon <= 1 per round, rounds adding up);
- Renyi DP (:func:`rdp_epsilon`): the rounds composed with Opacus's ``RDPAccountant`` (RDP
  ``alpha / (2 z^2)`` per round at order alpha, converted to (epsilon, delta) once), the optional
  ``opacus`` extra (``pip install omnifm-monai[privacy]``).

The spent epsilon is the smaller of the two. With ``budget`` set, a site whose next release would
spend more than the budget stops uploading tokens: the filter removes them, logs it, and marks the
result (``MetaKey.DP_BUDGET_SPENT``, metric ``dp_budget_spent``); its weights still go up. A
``ledger`` file keeps the releases across restarts of the site, so a restart does not reset the
budget. A tighter bound would use the class sizes; this one needs no information from the data.

The class ids that label-aware prototypes send with the rows (``MetaKey.TOKEN_LABELS``: which classes
the site holds) are not noised, so the filter removes them: with DP on, the site's rows go up unlabelled.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from monai.utils import optional_import
from nvflare.apis.dxo import MetaKey as DXOMetaKey
from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from omnifm_monai.flare.constants import MetaKey

__all__ = ["SpectralTokenPrivacy", "gaussian_epsilon", "basic_epsilon", "rdp_epsilon", "has_rdp_accountant"]

RDPAccountant, _has_opacus = optional_import("opacus.accountants", name="RDPAccountant")


def has_rdp_accountant() -> bool:
    """Whether Opacus's RDP accountant is installed (the ``privacy`` extra)."""
    return bool(_has_opacus)


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Epsilon of one Gaussian-mechanism release with noise ``noise_multiplier`` x sensitivity."""
    if noise_multiplier <= 0 or not 0 < delta < 1:
        raise ValueError(f"need noise_multiplier > 0 and 0 < delta < 1, got {noise_multiplier} and {delta}.")
    return math.sqrt(2 * math.log(1.25 / delta)) / noise_multiplier


def basic_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon after ``rounds`` releases by basic composition (each round's epsilon added)."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}.")
    return rounds * gaussian_epsilon(noise_multiplier, delta)


def rdp_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon after ``rounds`` Gaussian releases (sampling rate 1) composed by Opacus's RDP accountant.

    Raises:
        ValueError: ``noise_multiplier`` <= 0, ``delta`` outside (0, 1) or ``rounds`` < 0.
        OptionalImportError: Opacus is not installed (``pip install omnifm-monai[privacy]``).
    """
    gaussian_epsilon(noise_multiplier, delta)  # the argument checks
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}.")
    if rounds == 0:
        return 0.0
    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=1.0)
    return float(accountant.get_epsilon(delta))


class SpectralTokenPrivacy(Filter):
    """Clip and noise the spectral tokens a site uploads; account the (epsilon, delta) spent; enforce a budget.

    Args:
        noise_multiplier: noise standard deviation in units of the sensitivity ``2 * clip``; the
            Gaussian-mechanism bound needs it >= sqrt(2 ln(1.25/delta)) (epsilon <= 1 per round).
        clip: L2 norm each row is clipped to.
        delta: the delta of the (epsilon, delta) guarantee.
        seed: seed of the noise (None: fresh entropy, what a deployment wants).
        budget: total epsilon the site may spend (0: no budget); a release that would pass it is
            not made.
        ledger: JSON file counting the releases made (kept across restarts); empty: in memory only.
    """

    def __init__(
        self,
        noise_multiplier: float = 5.0,
        clip: float = 1.0,
        delta: float = 1e-5,
        seed: int | None = None,
        budget: float = 0.0,
        ledger: str = "",
    ):
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}.")
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budget must be a finite epsilon >= 0 (0: no budget), got {budget}.")
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
        self.budget = budget
        self.ledger = ledger
        self._rng = np.random.default_rng(seed)
        self._rounds = self._read_ledger()

    @property
    def releases(self) -> int:
        """Token releases made so far (this site, over its restarts when a ledger is kept)."""
        return self._rounds

    def epsilon_after(self, rounds: int) -> tuple[float, float | None]:
        """``(basic, rdp)`` epsilon after ``rounds`` releases; ``rdp`` is None without Opacus."""
        basic = basic_epsilon(self.noise_multiplier, rounds, self.delta)
        rdp = rdp_epsilon(self.noise_multiplier, rounds, self.delta) if has_rdp_accountant() else None
        return basic, rdp

    def spent_after(self, rounds: int) -> float:
        """The epsilon bound after ``rounds`` releases: the smaller of basic composition and RDP."""
        basic, rdp = self.epsilon_after(rounds)
        return basic if rdp is None else min(basic, rdp)

    def privatize(self, tokens: np.ndarray) -> np.ndarray:
        """(N, d) rows -> clipped, noised, re-normalised (N, d) float32."""
        rows = np.asarray(tokens, dtype=np.float64)  # (N, d)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)  # (N, 1)
        clipped = rows * np.minimum(1.0, self.clip / np.maximum(norms, 1e-12))
        noisy = clipped + self._rng.normal(0.0, self.noise_multiplier * 2 * self.clip, size=rows.shape)
        return (noisy / np.maximum(np.linalg.norm(noisy, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo = from_shareable(shareable)
        tokens = dxo.meta.get(MetaKey.TOKENS)
        if tokens is None:
            return shareable
        dxo.meta.pop(MetaKey.TOKEN_LABELS, None)  # not covered by the guarantee: the rows go up unlabelled
        metrics = dxo.meta.get(DXOMetaKey.INITIAL_METRICS)
        if self.budget and self.spent_after(self._rounds + 1) > self.budget:
            del dxo.meta[MetaKey.TOKENS]
            dxo.meta[MetaKey.DP_BUDGET_SPENT] = True
            spent = self.spent_after(self._rounds)
            self.log_warning(
                fl_ctx,
                f"spectral DP budget spent: epsilon {spent:.3f} after {self._rounds} uploads, one more would pass "
                f"the budget {self.budget:g}; no spectral tokens are uploaded from now on (weights still are)",
            )
            if isinstance(metrics, dict):
                dxo.meta[DXOMetaKey.INITIAL_METRICS] = {**metrics, "dp_budget_spent": 1.0, "dp_epsilon": spent}
            return dxo.update_shareable(shareable)
        dxo.meta[MetaKey.TOKENS] = self.privatize(tokens)
        self._rounds += 1
        self._write_ledger()
        basic, rdp = self.epsilon_after(self._rounds)
        dxo.meta[MetaKey.DP_EPSILON] = [self.epsilon_per_round, basic, self.delta]
        if rdp is not None:
            dxo.meta[MetaKey.DP_RDP_EPSILON] = rdp
        if isinstance(metrics, dict):
            spent = basic if rdp is None else min(basic, rdp)
            dxo.meta[DXOMetaKey.INITIAL_METRICS] = {**metrics, "dp_budget_spent": 0.0, "dp_epsilon": spent}
        return dxo.update_shareable(shareable)

    def _read_ledger(self) -> int:
        if not self.ledger or not os.path.exists(self.ledger):
            return 0
        try:
            with open(self.ledger) as f:
                releases = json.load(f)["releases"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f'DP ledger {self.ledger}: unreadable ({e}); expected {{"releases": <int>}}.') from e
        if not isinstance(releases, int) or isinstance(releases, bool) or releases < 0:
            raise ValueError(f"DP ledger {self.ledger}: releases must be an int >= 0, got {releases!r}.")
        return releases

    def _write_ledger(self) -> None:
        if not self.ledger:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.ledger)), exist_ok=True)
        tmp = f"{self.ledger}.tmp"
        with open(tmp, "w") as f:
            json.dump({"releases": self._rounds, "noise_multiplier": self.noise_multiplier, "delta": self.delta}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.ledger)
