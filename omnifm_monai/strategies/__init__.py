"""Federated strategies as small hook objects, and their registry.

Every strategy runs through the same NVFlare controller and the same client script; each is one
file here (a frozen dataclass over :class:`~omnifm_monai.strategies.base.Strategy`) plus one entry in
:data:`STRATEGIES`. The server's averaging is :mod:`omnifm_monai.strategies.aggregate`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from monai.utils import look_up_option

from .aggregate import Aggregator, WeightedMean, weighted_mean
from .amplitude_bank import AmplitudeBank
from .base import Strategy, norm_layer_keys
from .ditto import Ditto
from .fedavg import FedAvg
from .fedbn import FedBN
from .feddg_elcfs import FedDGELCFS
from .feddyn import FedDyn
from .fedopt import FedAdam, FedAvgM, FedYogi, ServerOptimizer
from .fedper import TASK_HEAD_KEYS, FedPer
from .fedprox import FedProx
from .fedrep import FedRep
from .gpfl import GPFL
from .harmofl import HarmoFL
from .local import LocalOnly
from .moon import MOON
from .omnifm import OmniFM
from .proximal import ProximalLoss
from .scaffold import Scaffold
from .weight_perturbation import WeightPerturbation

__all__ = [
    "STRATEGIES",
    "TASK_HEAD_KEYS",
    "GPFL",
    "MOON",
    "Aggregator",
    "AmplitudeBank",
    "Ditto",
    "FedAvg",
    "FedAdam",
    "FedAvgM",
    "FedBN",
    "FedDGELCFS",
    "FedDyn",
    "FedPer",
    "FedProx",
    "FedRep",
    "FedYogi",
    "HarmoFL",
    "LocalOnly",
    "OmniFM",
    "ProximalLoss",
    "Scaffold",
    "ServerOptimizer",
    "Strategy",
    "WeightPerturbation",
    "WeightedMean",
    "get_strategy",
    "norm_layer_keys",
    "weighted_mean",
]

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        FedAvg(),
        FedProx(),
        FedPer(),
        FedBN(),
        LocalOnly(),
        OmniFM(),
        # OmniFM exactly as the paper describes it: only c (and the prototype bank) stays at the site
        OmniFM(
            name="omnifm_paper", private_patterns=(), private_norm_layers=False, recalibrate_norms=False, spectral=True
        ),
        # server-side baselines (issue 13): server optimizers, control variates, dynamic regularisation
        FedAdam(),
        FedYogi(),
        FedAvgM(),
        Scaffold(),
        FedDyn(),
        # personalised baselines: a personal model, a private head, a contrastive term, GPFL's feature split
        Ditto(),
        FedRep(),
        MOON(),
        GPFL(),
        # the frequency-domain peers (docs/method.md, "Frequency-domain baselines")
        FedDGELCFS(),
        HarmoFL(),
    )
}


def get_strategy(name: str, **options: Any) -> Strategy:
    """Look up a strategy by name (``"did you mean"`` on a typo) and optionally override its options.

    Example: ``get_strategy("fedprox", proximal_mu=0.1)``,
    ``get_strategy("omnifm", private_patterns=(r"^task_head\\.",))``.

    Raises:
        ValueError: ``name`` is not in :data:`STRATEGIES`, or an option is not a field of the strategy.
    """
    strategy = look_up_option(name.lower(), STRATEGIES)
    if not options:
        return strategy
    fields = [f.name for f in dataclasses.fields(strategy)]
    for key in options:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown option {key!r} of strategy {strategy.name!r}; options: {fields}.{hint}")
    return dataclasses.replace(strategy, **options)
