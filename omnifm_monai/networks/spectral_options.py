"""The hyperparameters of the OmniFM spectral path, shared by every task network."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SpectralPathOptions", "SpectralOptionsLike"]


@dataclass(frozen=True, kw_only=True)
class SpectralPathOptions:
    """Tokenizer, prototype memory and attention settings of :class:`~omnifm_monai.networks.OmniFMNetwork`.

    Every network takes them as ``spectral_options=`` (an instance or a plain mapping, so a bundle
    config can write ``"spectral_options": {"token_dim": 32}``); the booleans ``spectral`` and
    ``prompt`` stay separate keyword arguments, since the federated strategies switch them.

    Args:
        token_dim: d_s, the width of the spectral token and of the prototypes.
        cutoff: low-pass cutoff of the tokenizer, a fraction of the Nyquist band in (0, 1].
        top_k: prototypes retrieved per sample.
        memory_capacity: prototypes the site's bank can hold.
        num_heads: heads of the ECA and of the network's own attention blocks (head, mixer); must
            divide the network's token width d.
        freeze_tokenizer: the tokenizer keeps its initial weights (no gradient): the token stays a fixed
            random projection of the low-pass log-amplitude spectrum, the same at every site. Trained, the
            shared tokenizer maps every site's images onto one direction within a few rounds (token
            collapse, docs/benchmarks.md), and retrieval then has nothing to choose between.

    Raises:
        ValueError: a field out of range; the message names the field and its value.
    """

    token_dim: int = 64
    cutoff: float = 0.1
    top_k: int = 4
    memory_capacity: int = 64
    num_heads: int = 4
    freeze_tokenizer: bool = False

    def __post_init__(self) -> None:
        for name in ("token_dim", "top_k", "memory_capacity", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if not isinstance(self.freeze_tokenizer, bool):
            raise ValueError(f"freeze_tokenizer must be a bool, got {self.freeze_tokenizer!r}.")
        cutoff = self.cutoff
        if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not 0.0 < cutoff <= 1.0:
            raise ValueError(f"cutoff must be in (0, 1], got {self.cutoff!r}.")

    @classmethod
    def coerce(cls, options: SpectralOptionsLike) -> SpectralPathOptions:
        """``None`` (the defaults), a mapping of field values, or an instance -> an instance.

        Raises:
            ValueError: a mapping with a key that is not a field.
            TypeError: anything else.
        """
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(options) - fields)
            if unknown:
                raise ValueError(f"spectral_options has unknown keys {unknown}; the fields are {sorted(fields)}.")
            return cls(**options)
        raise TypeError(
            f"spectral_options must be a SpectralPathOptions, a mapping or None, got {type(options).__name__}."
        )


SpectralOptionsLike = SpectralPathOptions | Mapping[str, Any] | None
"""What a network's ``spectral_options`` argument accepts."""
