"""OmniFM: the site-private suffix c and private normalisation layers and head; the spectral path as an option."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.strategies.base import Strategy
from omnifm_monai.strategies.fedper import TASK_HEAD_KEYS

__all__ = ["OmniFM"]


@dataclass(frozen=True, kw_only=True)
class OmniFM(Strategy):
    """OmniFM as we run it: the paper's private suffix c, plus the site's normalisation layers and task head.

    Keeping the normalisation layers and the task head private is +12 points over keeping only c on
    the phantom (docs/method.md); the site re-estimates the BatchNorm statistics for every model it
    receives (+11 points on real MedMNIST at 20 % participation, docs/benchmarks.md). The paper's
    variant, only c private, is the registry entry ``omnifm_paper``.

    The spectral path (spectral tokens, ECA over retrieved prototypes, GSKR on the server, SPAlign) is
    off by default since 2026-12-03: on three real federations it moved the result by no more than the
    seed noise (paired intervals including 0, docs/benchmarks.md "The spectral path"). ``spectral=True``
    (``--strategy-options '{"spectral":true}'``) turns it on; ``omnifm_paper`` keeps it.
    """

    name: str = "omnifm"
    private_patterns: tuple[str, ...] = (TASK_HEAD_KEYS,)
    private_norm_layers: bool = True
    spectral: bool = False
    prompt: bool = True
    recalibrate_norms: bool = True
