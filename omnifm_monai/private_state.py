"""The one rule that decides which parameters stay at a site.

A parameter or buffer is *private* when any dot-separated component of its state-dict key
starts with ``private`` (for example ``prompt.private_suffix`` or
``spectral_memory.private_prototypes``). Private values are never aggregated and never
leave the site. Baselines declare more private keys with extra regular expressions (FedPer:
the classifier head; FedBN: normalisation layers); those go through the same helpers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PRIVATE_PREFIX", "is_private_key", "split_state_dict", "shared_keys"]

PRIVATE_PREFIX = "private"


def is_private_key(key: str, extra_private: Iterable[str] = ()) -> bool:
    """Return True when ``key`` stays at the site.

    Args:
        key: a state-dict key such as ``"prompt.private_suffix"``.
        extra_private: regular expressions (matched with ``re.search``) that also mark keys private.
    """
    if any(part.startswith(PRIVATE_PREFIX) for part in key.split(".")):
        return True
    return any(re.search(pattern, key) for pattern in extra_private)


def split_state_dict(
    state: Mapping[str, Any], extra_private: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a state dict into ``(shared, private)`` dictionaries, keeping key order.

    Every place that decides what leaves a site calls this function.
    """
    extra_private = tuple(extra_private)
    shared: dict[str, Any] = {}
    private: dict[str, Any] = {}
    for key, value in state.items():
        (private if is_private_key(key, extra_private) else shared)[key] = value
    return shared, private


def shared_keys(keys: Iterable[str], extra_private: Iterable[str] = ()) -> list[str]:
    """The subset of ``keys`` that may leave the site."""
    extra_private = tuple(extra_private)
    return [k for k in keys if not is_private_key(k, extra_private)]
