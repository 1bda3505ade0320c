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
    "VariateMean",
    "WeightedMean",
    "optimized_keys",
    "split_state",
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

    def validate_meta(self, site: str, meta: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Check what an upload carries beyond weights and tokens (``params``: its validated weights).

        Called by the server before :meth:`accept`; none here (SCAFFOLD: its control-variate delta,
        FedDG-ELCFS: its amplitude spectra).

        Returns:
            the extra entries' bytes by kind (``{"control": n}``, ``{"spectral": n}``) for the round's record.

        Raises:
            ValueError: the extra entries are missing or break the protocol (the server rejects the upload).
        """
        return {}

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


class VariateMean(WeightedMean):
    """The weighted mean plus one server variate per :func:`optimized_keys` key (SCAFFOLD's c, FedDyn's h).

    Subclasses update :attr:`variate` in ``aggregate`` with sums over the round's sites divided by
    :attr:`federation_size` (the papers' ``1/N``); the variate and the sites seen survive a restart.

    Args:
        num_sites: ``N``, all sites of the federation; 0: the distinct sites accepted so far (exact
            once every site has uploaded; with full participation, from the first round).

    Raises:
        ValueError: ``num_sites`` is negative.
    """

    state_prefix = "variate"  # the variate's entries in state_dict: "<state_prefix>/<key>"

    def __init__(self, *, num_sites: int = 0) -> None:
        super().__init__()
        if num_sites < 0:
            raise ValueError(f"num_sites must be >= 0, got {num_sites!r}.")
        self.num_sites = num_sites
        self.variate: dict[str, np.ndarray] = {}  # key -> float64 array; empty (zero) before the first round
        self.seen: set[str] = set()  # sites accepted in any round

    @property
    def federation_size(self) -> int:
        """``N`` of the ``1/N`` updates."""
        return self.num_sites or len(self.seen)

    def add(self, site: str, params: Mapping[str, np.ndarray], weight: float, round_num: int, meta: Mapping) -> None:
        super().add(site, params, weight, round_num, meta)
        self.seen.add(site)

    def state_dict(self) -> dict[str, np.ndarray]:
        variate = {f"{self.state_prefix}/{k}": v for k, v in self.variate.items()}
        return {**variate, "seen": np.asarray(sorted(self.seen), dtype=str)}

    def load_state_dict(self, state: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> None:
        arrays = {k: v for k, v in state.items() if k != "seen"}
        self.variate = split_state(arrays, (self.state_prefix,), like=like, owner=type(self).__name__)[
            self.state_prefix
        ]
        self.seen = {str(s) for s in np.asarray(state.get("seen", [])).tolist()}


def split_state(
    state: Mapping[str, np.ndarray], kinds: tuple[str, ...], *, like: Mapping[str, np.ndarray], owner: str
) -> dict[str, dict[str, np.ndarray]]:
    """``{"<kind>/<key>": array}`` -> ``{kind: {key: float64 array}}``, each key and shape checked against ``like``.

    Raises:
        ValueError: an entry of another kind, or of a key or shape the global model does not have.
    """
    groups: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in kinds}
    for name, value in state.items():
        kind, _, key = name.partition("/")
        if kind not in groups or key not in like or np.shape(value) != np.shape(like[key]):
            raise ValueError(f"{owner} state entry {name!r} does not match the global model.")
        groups[kind][key] = np.asarray(value, np.float64)
    return groups


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
