"""The server's round logic, free of NVFlare so it can be tested in-process.

:class:`ServerCore` owns the global shared weights, the spectral knowledge base (GSKR), each
site's latest spectral queries and the round history. The NVFlare controller
(:mod:`omnifm_monai.flare.controller`) only moves messages between it and the clients.

One round::

    for site in participants: params, meta = core.payload(site)      # shared weights + prototypes
    for each result:          core.submit(site, params, meta)        # validated, else InvalidUploadError
    record = core.close_round()                                      # aggregate, update KB, prune
    core.save(state_dir)                                             # resume point
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_persistence import non_finite_keys, read_resume_point, write_state
from omnifm_monai.flare.uploads import (
    InvalidUploadError,
    clean_metrics,
    validate_dp_report,
    validate_num_samples,
    validate_token_labels,
    validate_tokens,
    validate_upload,
)
from omnifm_monai.knowledge import (
    SpectralKnowledgeBase,
    check_int,
    first_contact_rows,
    site_prototype_rows,
    token_cosines,
)
from omnifm_monai.strategies import Strategy
from omnifm_monai.strategies.aggregate import AGGREGATOR_STATE_FILE

__all__ = ["ServerCore"]

logger = logging.getLogger(__name__)


def _check_positive(name: str, value: Any) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def _check_upload_limits(max_abs_value: Any, max_num_samples: Any, max_sample_change: Any) -> tuple[float, int, float]:
    """The upload limits of :class:`ServerCore`, checked (a ValueError names the option)."""
    max_abs_value = _check_positive("max_abs_value", max_abs_value)
    if max_abs_value > float(np.finfo(np.float32).max) / 1e16:  # room for float32 sums of weighted uploads
        raise ValueError(f"max_abs_value must be <= 3.4e22, got {max_abs_value!r}.")
    max_sample_change = _check_positive("max_sample_change", max_sample_change)
    if max_sample_change < 1:
        raise ValueError(f"max_sample_change must be >= 1, got {max_sample_change!r}.")
    return max_abs_value, check_int("max_num_samples", max_num_samples, 1), max_sample_change


class ServerCore:
    """Global state and round logic of the OmniFM server, for every strategy.

    Every option is checked here (a ValueError names it), before the run starts.

    Args:
        strategy: the federated strategy; its ``aggregator()`` turns accepted uploads into the next
            global state and ``uses_knowledge_base`` says whether GSKR runs.
        initial_params: the full initial model state ``{key: array}`` (private keys are dropped).
        private_keys: keys that stay at the sites; the server never sends or accepts them.
        token_dim: d_s of the spectral tokens.
        retrieval_k: neighbours retrieved per query of a site.
        prototypes_per_site: most prototypes sent to one site (0: none, the ablation without GSKR).
        max_tokens_per_upload: a site uploading more spectral rows is rejected (token flood).
        knowledge_base_size: entries kept after pruning.
        min_per_source: entries each site keeps through pruning (rare modalities survive).
        max_age: rounds an entry may go unretrieved before ageing drops it (None: never).
        max_abs_value: largest accepted magnitude of an uploaded float value (an overflow guard).
        max_num_samples: largest sample count a site may report.
        max_sample_change: a site's later sample counts stay within this factor of its first one.
        balance_sources: each site holds at most ``max(min_per_source, knowledge_base_size // sites)``
            knowledge-base entries (one site cannot take the base over).
        duplicate_threshold: an uploaded token with cosine >= this to a stored entry is collapsed into it
            (None: never).
        balance_prototypes: at most ``ceil(prototypes_per_site / other sources)`` of the prototypes a site
            is sent come from one source (off: the nearest, whichever site they come from).
    """

    def __init__(
        self,
        strategy: Strategy,
        initial_params: Mapping[str, Any],
        private_keys: Iterable[str],
        *,
        token_dim: int = 64,
        retrieval_k: int = 8,
        prototypes_per_site: int = 64,
        max_tokens_per_upload: int = 256,
        knowledge_base_size: int = 2048,
        min_per_source: int = 8,
        max_age: int | None = 10,
        max_abs_value: float = 1e8,
        max_num_samples: int = 10_000_000,
        max_sample_change: float = 2.0,
        balance_sources: bool = True,
        duplicate_threshold: float | None = 0.995,
        balance_prototypes: bool = False,
    ) -> None:
        self.strategy = strategy
        self.private_keys = frozenset(private_keys)
        self.global_params = {
            k: np.array(v, copy=True) for k, v in initial_params.items() if k not in self.private_keys
        }
        self.shared_shapes = {k: tuple(v.shape) for k, v in self.global_params.items()}
        self.shared_dtypes = {k: v.dtype for k, v in self.global_params.items()}
        self.token_dim = check_int("token_dim", token_dim, 1)
        self.retrieval_k = check_int("retrieval_k", retrieval_k, 0)
        self.prototypes_per_site = check_int("prototypes_per_site", prototypes_per_site, 0)
        self.max_tokens_per_upload = check_int("max_tokens_per_upload", max_tokens_per_upload, 1)
        self.max_abs_value, self.max_num_samples, self.max_sample_change = _check_upload_limits(
            max_abs_value, max_num_samples, max_sample_change
        )
        if not isinstance(balance_prototypes, bool):
            raise ValueError(f"balance_prototypes must be a bool, got {balance_prototypes!r}.")
        self.balance_prototypes = balance_prototypes
        kb = SpectralKnowledgeBase(  # built for every strategy: its options are checked at start
            token_dim,
            max_size=check_int("knowledge_base_size", knowledge_base_size, 1),
            min_per_source=check_int("min_per_source", min_per_source, 0),
            max_upload=max_tokens_per_upload,
            max_age=None if max_age is None else check_int("max_age", max_age, 0),
            balance_sources=balance_sources,
            duplicate_threshold=duplicate_threshold,
        )
        self.knowledge_base = kb if strategy.uses_knowledge_base else None
        self.round = 0  # the round now running (or the next to run)
        self.site_queries: dict[str, np.ndarray] = {}  # each site's latest upload, (N, d_s)
        self.site_num_samples: dict[str, int] = {}  # each site's first accepted sample count
        self.history: list[dict[str, Any]] = []
        self._aggregator = strategy.aggregator()  # accepted uploads -> the next global state
        self._reset_round()

    # ------------------------------------------------------------------ one round
    def _reset_round(self) -> None:
        self._aggregator.reset()
        self._accepted: dict[str, dict[str, Any]] = {}
        self._rejected: dict[str, str] = {}
        # each accepted site's tokens (N, d_s) and their class ids (N,) (None unless label-aware prototypes)
        self._uploads: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._metrics: dict[str, dict[str, float | int]] = {}  # cleaned metrics of the accepted uploads
        self._retrieval_seconds = 0.0

    def payload(self, site: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What the server sends ``site`` this round: shared weights and, for OmniFM, prototypes (P, d_s) (with
        their class ids (P,) when the sites sent theirs: label-aware prototypes)."""
        meta: dict[str, Any] = {MetaKey.ROUND: self.round, MetaKey.STRATEGY: self.strategy.name}
        if self.knowledge_base is not None:
            rows = self._prototype_rows_for(site)  # (P,)
            meta[MetaKey.PROTOTYPES] = self.knowledge_base.get(rows).astype(np.float32)
            labels = self.knowledge_base.labels[rows]  # (P,), -1: unlabelled
            if (labels >= 0).any():
                meta[MetaKey.PROTOTYPE_LABELS] = labels.copy()
        meta.update(self._aggregator.outgoing_meta(site))
        return dict(self.global_params), meta

    def _prototype_rows_for(self, site: str) -> np.ndarray:
        """Knowledge-base rows (P,) of the top-k neighbours (from other sites) of each of the site's queries,
        deduplicated; before the site's first upload (it joins late, or is sampled for the first time) the other
        sources' newest entries."""
        kb, queries = self.knowledge_base, self.site_queries.get(site)
        if len(kb) == 0 or self.prototypes_per_site == 0:
            return np.zeros(0, np.int64)
        if queries is None:
            return first_contact_rows(kb, site=site, limit=self.prototypes_per_site)
        start = time.perf_counter()
        rows = site_prototype_rows(
            kb,
            queries,
            site=site,
            retrieval_k=self.retrieval_k,
            limit=self.prototypes_per_site,
            round_num=self.round,
            balanced=self.balance_prototypes,
        )
        self._retrieval_seconds += time.perf_counter() - start
        return rows

    def submit(
        self, site: str, params: Mapping[str, Any], meta: Mapping[str, Any], *, metrics: Mapping | None = None
    ) -> None:
        """Validate and stage one site's result; nothing global changes until :meth:`close_round`.

        Everything (weights, sample count, tokens, DP report, metrics) is checked before anything is
        staged: an upload is accepted whole or rejected whole. Unusable metrics are dropped with a
        warning and never reject the upload.

        Raises:
            InvalidUploadError: the upload broke the protocol (recorded in the round's history too).
        """
        try:
            if site in self._accepted:
                raise InvalidUploadError(f"{site} already submitted in round {self.round}.")
            if not isinstance(meta, Mapping):
                raise InvalidUploadError(f"meta must be a mapping, got {type(meta).__name__}.")
            if meta.get(MetaKey.SITE_ERROR):
                raise InvalidUploadError(str(meta[MetaKey.SITE_ERROR]))
            if meta.get(MetaKey.TRAINING_FAILED):
                raise InvalidUploadError("the site's local training failed this round (details in the site's log).")
            num_samples = validate_num_samples(
                meta.get(MetaKey.NUM_SAMPLES),
                max_num_samples=self.max_num_samples,
                previous=self.site_num_samples.get(site),
                max_change=self.max_sample_change,
            )
            arrays = {}
            if self.shared_shapes:
                arrays = validate_upload(
                    params,
                    self.shared_shapes,
                    self.private_keys,
                    dtypes=self.shared_dtypes,
                    max_abs_value=self.max_abs_value,
                )
            try:  # what the strategy sends beyond weights (SCAFFOLD's delta, FedDG's amplitude spectra)
                extra_bytes = self._aggregator.validate_meta(site, meta, arrays)
            except InvalidUploadError:
                raise
            except ValueError as e:
                raise InvalidUploadError(str(e)) from e
            tokens = token_labels = None
            if self.knowledge_base is not None and meta.get(MetaKey.DP_BUDGET_SPENT) is not True:
                if meta.get(MetaKey.TOKENS) is None:
                    raise InvalidUploadError(f"{self.strategy.name} needs spectral tokens in meta.")
                tokens = validate_tokens(meta[MetaKey.TOKENS], self.token_dim, self.max_tokens_per_upload)
                token_labels = validate_token_labels(meta.get(MetaKey.TOKEN_LABELS), len(tokens))  # (N,) or None
            dp = meta.get(MetaKey.DP_EPSILON)
            dp = None if dp is None else validate_dp_report(dp)
        except InvalidUploadError as e:
            self._rejected[site] = str(e)
            raise
        kept = self.clean_site_metrics(site, metrics)
        if arrays:
            self._aggregator.accept(site, arrays, weight=float(num_samples), round_num=self.round, meta=meta)
        if tokens is not None:
            self._uploads[site] = (tokens, token_labels)
        self.site_num_samples.setdefault(site, num_samples)
        self._metrics[site] = kept
        self._accepted[site] = {
            "num_samples": num_samples,
            "model_bytes": int(sum(a.nbytes for a in arrays.values())),
            "spectral_bytes": (int(tokens.nbytes) if tokens is not None else 0) + int(extra_bytes.get("spectral", 0)),
        }
        if extra_bytes.get("control"):  # SCAFFOLD's control-variate delta
            self._accepted[site]["control_bytes"] = int(extra_bytes["control"])
        if meta.get(MetaKey.DP_BUDGET_SPENT) is True:  # the site's DP filter stopped its token uploads
            self._accepted[site]["dp_budget_spent"] = True
        if dp is not None:  # (per round, total, delta) the site's DP filter reports
            self._accepted[site]["dp_epsilon"] = dp

    def close_round(self, participants: Iterable[str] = (), metrics: Mapping[str, Mapping] | None = None) -> dict:
        """Aggregate the accepted uploads, update the knowledge base and start the next round.

        Args:
            participants: the sites that were asked to train (for the record).
            metrics: ``{site: {name: value}}`` the sites reported this round.

        Returns:
            the round's record (also appended to :attr:`history`).
        """
        start = time.perf_counter()
        dropped = None
        if self._accepted and self.shared_shapes:
            # the strategy's aggregation (weighted mean: each key's dtype kept, see strategies/aggregate.py)
            aggregate = self._aggregator.aggregate(self.global_params)
            bad = non_finite_keys(aggregate)
            if bad:  # never saved nor sent: the round keeps the previous global weights
                dropped = f"the aggregate of {sorted(self._accepted)} is not finite in {bad[:5]}; round dropped"
                logger.error(f"round {self.round}: {dropped}")
            else:
                self.global_params = aggregate
        aggregate_seconds = time.perf_counter() - start
        start = time.perf_counter()
        if self.knowledge_base is not None:
            for site, (tokens, labels) in sorted(self._uploads.items()):  # site-name order, as the weights
                self.knowledge_base.add(tokens, source=site, round_num=self.round, labels=labels)
                self.site_queries[site] = tokens
            self.knowledge_base.age(self.round)
            self.knowledge_base.prune()
        participants = sorted(participants)
        record = {
            "round": self.round,
            "participants": participants,
            "accepted": self._accepted,
            "rejected": self._rejected,
            # asked to train but nothing came back in time (crashed, disconnected or timed out)
            "no_result": [s for s in participants if s not in self._accepted and s not in self._rejected],
            "metrics": self._round_metrics(metrics),
            "dropped": dropped,  # None, or why the aggregate was not adopted
            "knowledge_base_size": len(self.knowledge_base) if self.knowledge_base is not None else 0,
            # how far apart the sites' latest uploads are (both near 1: token collapse, knowledge/spread.py)
            "token_cosine": token_cosines(self.site_queries) if self.knowledge_base is not None else None,
            "closed_at": time.time(),  # wall clock (s since the epoch): round durations, benchmarks/nvflare_overhead.py
            "seconds": {
                "aggregate": aggregate_seconds,
                "retrieval": self._retrieval_seconds,
                "knowledge_base_update": time.perf_counter() - start,
            },
        }
        self.history.append(record)
        self.round += 1
        self._reset_round()
        return record

    def _round_metrics(self, metrics: Mapping[str, Mapping] | None) -> dict[str, dict]:
        """The round's metrics: the controller's ``{site: metrics}`` cleaned, the accepted uploads' own first."""
        out = {str(site): self.clean_site_metrics(site, values) for site, values in (metrics or {}).items()}
        out.update(self._metrics)
        return out

    def clean_site_metrics(self, site: str, metrics: Any) -> dict[str, float | int]:
        """``site``'s metrics as JSON-safe Python numbers; unusable ones dropped with a warning."""
        kept, dropped = clean_metrics(metrics)
        if dropped:
            logger.warning(f"{site} round {self.round}: dropped unusable metrics {dropped[:5]} (not finite numbers)")
        return kept

    # ------------------------------------------------------------------ persistence
    def save(self, state_dir: str | os.PathLike) -> None:
        """Write the global weights, knowledge base, queries and history (one folder, swapped whole).

        See :mod:`omnifm_monai.flare.server_persistence` (checksums, the ``.old`` fallback).

        Raises:
            ValueError: the global weights are not finite (nothing is written).
        """
        bad = non_finite_keys(self.global_params)
        if bad:
            raise ValueError(f"refusing to save non-finite global weights to {state_dir} (keys {bad[:5]}).")
        extra = {}
        if self.knowledge_base is not None:
            extra["knowledge_base.npz"] = self.knowledge_base.save
        extra[AGGREGATOR_STATE_FILE] = self._aggregator.save_state  # server optimizer moments, control variates
        write_state(
            state_dir,
            arrays={"global_params.npz": self.global_params, "site_queries.npz": self.site_queries},
            extra_files=extra,
            meta={"round": self.round, "strategy": self.strategy.name, "history": self.history},
        )

    def load(self, state_dir: str | os.PathLike) -> bool:
        """Resume from :meth:`save`'s output (or its ``.old`` copy); returns False (state unchanged) when none.

        Raises:
            ValueError: naming the file, when the saved state is unreadable, fails its checksum,
                belongs to another strategy or model, holds NaN/Inf weights or a bad round.
        """
        point = read_resume_point(
            state_dir,
            strategy=self.strategy.name,
            shared_shapes=self.shared_shapes,
            with_knowledge_base=self.knowledge_base is not None,
        )
        if point is None:
            return False
        self._aggregator.load_state(os.path.join(point.folder, AGGREGATOR_STATE_FILE), like=point.params)
        self.global_params = {k: v.astype(self.shared_dtypes[k], copy=False) for k, v in point.params.items()}
        self.site_queries, self.round, self.history = point.queries, point.round, point.history
        self.site_num_samples = {}
        for record in self.history:  # each site's first accepted sample count
            for site, accepted in (record.get("accepted") or {}).items():
                self.site_num_samples.setdefault(site, int(accepted["num_samples"]))
        if point.knowledge_base is not None:
            self.knowledge_base = point.knowledge_base
        self._reset_round()
        return True
