"""Local-only training through the same pipeline: nothing leaves the site."""

from __future__ import annotations

from dataclasses import dataclass

from omnifm_monai.strategies.base import Strategy

__all__ = ["LocalOnly"]


@dataclass(frozen=True, kw_only=True)
class LocalOnly(Strategy):
    """Every key is private; the server accepts empty uploads and keeps no model."""

    name: str = "local"
    share_nothing: bool = True
