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

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

__all__ = [
    "AGGREGATOR_STATE_FILE",
    "NORM_STATISTICS",
    "Aggregator",
    "WeightedMean",
    "optimized_keys",
    "weighted_mean",
]

AGGREGATOR_STATE_FILE = "aggregator_state.npz"
"""The aggregator's own state (server optimizer moments, control variates) in the server's state folder."""

NORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
"""Last key parts of normalisation-layer buffers: averaged, never an optimizer's or a control variate's key."""


def optimized_keys(params: Mapping[str, np.ndarray]) -> list[str]:
    """Keys a server optimizer steps and control variates cover: float arrays that are not norm statistics.

    The server sees only names and arrays; like NVFlare's FedOpt (optimizer on ``named_parameters``,
    FedAvg for the rest) it leaves integer counters and BatchNorm running statistics to the mean.
    """
    return [
        k for k, v in params.items() if np.asarray(v).dtype.kind == "f" and k.rsplit(".", 1)[-1] not in NORM_STATISTICS
    ]


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

    def outgoing_meta(self, site: str) -> dict[str, Any]:
        """Extra ``FLModel.meta`` entries the server sends ``site`` (none here; SCAFFOLD: its control variate)."""
        return {}

    def validate_meta(self, site: str, meta: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> None:
        """Check what an upload carries beyond weights (``params``: its validated weights); none here.

        Raises:
            InvalidUploadError: the extra entries break the protocol (SCAFFOLD: wrong control-variate keys).
        """

    # ------------------------------------------------------------------ state across a server restart
    def state_dict(self) -> dict[str, np.ndarray]:
        """State the aggregator keeps across rounds (moments, control variates), flat ``{name: array}``."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`'s output; ``like`` is the restored global state (keys and shapes).

        Raises:
            ValueError: the state does not belong to this aggregator or model.
        """
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got entries {sorted(state)[:5]}.")

    def save_state(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` (.npz)."""
        np.savez(path, **self.state_dict())

    def load_state(self, path: str | os.PathLike, *, like: Mapping[str, np.ndarray]) -> bool:
        """Restore from :meth:`save_state`'s file; False (state unchanged) when there is none."""
        if not os.path.isfile(path):
            return False
        with np.load(path) as f:
            self.load_state_dict({k: f[k] for k in f.files}, like=like)
        return True


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
