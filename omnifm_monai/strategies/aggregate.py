"""The server side of a strategy: how a round's accepted uploads become the next global state.

The interface follows NVFlare's ``ModelAggregator`` (``accept_model`` / ``aggregate_model`` /
``reset_stats``); the maths of the weighted mean is also a plain function, :func:`weighted_mean`,
testable without a simulator (Flower's ``strategy/aggregate.py``). A server optimizer (FedAdam,
FedYogi, FedAvgM) is an :class:`Aggregator` whose :meth:`~Aggregator.aggregate` steps from the global
state along the mean's pseudo-gradient; control variates (SCAFFOLD) read their deltas from each
upload's ``meta`` in :meth:`~Aggregator.accept` and send the server's variate back through
:meth:`~Aggregator.outgoing_meta`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

__all__ = ["Aggregator", "WeightedMean", "weighted_mean"]


class Aggregator:
    """One round's aggregation on the server; the instance lives for the whole run (state across rounds)."""

    def accept(
        self,
        site: str,
        params: Mapping[str, np.ndarray],
        *,
        weight: float,
        round_num: int,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Stage one validated upload: its shared weights ``{key: array}`` and the site's weight (> 0).

        Raises:
            ValueError: ``weight`` is not positive.
        """
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight!r} (site {site!r}).")
        self.add(site, params, float(weight), round_num, meta or {})

    def add(self, site: str, params: Mapping[str, np.ndarray], weight: float, round_num: int, meta: Mapping) -> None:
        """What :meth:`accept` does with a checked upload (the part each aggregator implements)."""
        raise NotImplementedError

    def aggregate(self, global_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The next global state from the accepted uploads; same keys and dtypes as ``global_params``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the staged uploads (start of every round; a server optimizer keeps its moments)."""
        raise NotImplementedError

    def check_meta(self, site: str, meta: Mapping[str, Any]) -> int:
        """Check what an upload carries in ``meta`` beyond weights and tokens; returns its size in bytes.

        Called by the server before :meth:`accept` (none here; FedDG-ELCFS: its amplitude spectra).

        Raises:
            ValueError: the extra payload is missing or malformed (the server rejects the upload).
        """
        return 0

    def outgoing_meta(self, site: str) -> dict[str, Any]:
        """Extra ``FLModel.meta`` entries the server sends ``site`` (none here; SCAFFOLD: its control variate)."""
        return {}


class WeightedMean(Aggregator):
    """FedAvg's aggregation: each key's mean over the uploads, weighted by the sites' sample counts.

    The uploads are summed in site-name order, not arrival order, so the same uploads give a
    bit-identical result however the sites' answers interleave; the result keeps each key's dtype
    (integer counters such as BatchNorm's ``num_batches_tracked`` stay integers).
    """

    def __init__(self) -> None:
        self._staged: dict[str, tuple[Mapping[str, np.ndarray], float]] = {}  # site -> (params, weight)

    def add(self, site: str, params: Mapping[str, np.ndarray], weight: float, round_num: int, meta: Mapping) -> None:
        self._staged[site] = (params, weight)

    def aggregate(self, global_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return weighted_mean((self._staged[site] for site in sorted(self._staged)), like=global_params)

    def reset(self) -> None:
        self._staged = {}


def weighted_mean(
    uploads: Iterable[tuple[Mapping[str, np.ndarray], float]], *, like: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``sum_k n_k * w_k / sum_k n_k`` for every key of ``like``, in ``like``'s dtypes.

    The sum is NVFlare's ``WeightedAggregationHelper``.

    Args:
        uploads: ``(params, weight)`` pairs, added in this order (the rounding follows it).
        like: the global state: which keys to return and their dtypes.

    Raises:
        ValueError: ``uploads`` is empty or a weight is not positive.
    """
    helper, count = WeightedAggregationHelper(), 0
    for index, (params, weight) in enumerate(uploads):
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight!r} (upload {index}).")
        helper.add(params, weight=float(weight), contributor_name=f"upload-{index}", contribution_round=0)
        count += 1
    if not count:
        raise ValueError("uploads must hold at least one (params, weight) pair, got none.")
    averaged = helper.get_result()
    return {k: np.asarray(averaged[k]).astype(v.dtype, copy=False) for k, v in like.items()}
