"""FedPer (Arivazhagan et al., 2019): the task head stays at the site, the body is averaged."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.networks.base import TASK_HEAD
from omnifm_monai.strategies.base import Strategy

__all__ = ["FedPer", "TASK_HEAD_KEYS"]

TASK_HEAD_KEYS = rf"^{TASK_HEAD}\."  # every OmniFM network's output layer (classifier, U-Net output, ...)


@dataclass(frozen=True, kw_only=True)
class FedPer(Strategy):
    """Keys of the output layer (``task_head``) are private."""

    name: str = "fedper"
    private_patterns: tuple[str, ...] = (TASK_HEAD_KEYS,)
