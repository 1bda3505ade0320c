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

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.uploads import InvalidUploadError, validate_tokens, validate_upload
from omnifm_monai.knowledge import SpectralKnowledgeBase
from omnifm_monai.strategies import Strategy

__all__ = ["ServerCore"]


class ServerCore:
    """Global state and round logic of the OmniFM server, for every strategy.

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
    ) -> None:
        self.strategy = strategy
        self.private_keys = frozenset(private_keys)
        self.global_params = {
            k: np.array(v, copy=True) for k, v in initial_params.items() if k not in self.private_keys
        }
        self.shared_shapes = {k: tuple(v.shape) for k, v in self.global_params.items()}
        self.token_dim = token_dim
        self.retrieval_k = retrieval_k
        self.prototypes_per_site = prototypes_per_site
        self.max_tokens_per_upload = max_tokens_per_upload
        self.knowledge_base = (
            SpectralKnowledgeBase(
                token_dim,
                max_size=knowledge_base_size,
                min_per_source=min_per_source,
                max_upload=max_tokens_per_upload,
                max_age=max_age,
            )
            if strategy.uses_knowledge_base
            else None
        )
        self.round = 0  # the round now running (or the next to run)
        self.site_queries: dict[str, np.ndarray] = {}  # each site's latest upload, (N, d_s)
        self.history: list[dict[str, Any]] = []
        self._aggregator = strategy.aggregator()  # accepted uploads -> the next global state
        self._reset_round()

    # ------------------------------------------------------------------ one round
    def _reset_round(self) -> None:
        self._aggregator.reset()
        self._accepted: dict[str, dict[str, Any]] = {}
        self._rejected: dict[str, str] = {}
        self._tokens: dict[str, np.ndarray] = {}
        self._retrieval_seconds = 0.0

    def payload(self, site: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What the server sends ``site`` this round: shared weights and, for OmniFM, prototypes (P, d_s)."""
        meta: dict[str, Any] = {MetaKey.ROUND: self.round, MetaKey.STRATEGY: self.strategy.name}
        if self.knowledge_base is not None:
            meta[MetaKey.PROTOTYPES] = self._prototypes_for(site)
        meta.update(self._aggregator.outgoing_meta(site))
        return dict(self.global_params), meta

    def _prototypes_for(self, site: str) -> np.ndarray:
        """Top-k neighbours (from other sites) of each of the site's queries, deduplicated, (P, d_s)."""
        queries = self.site_queries.get(site)
        if queries is None or len(self.knowledge_base) == 0 or self.prototypes_per_site == 0:
            return np.zeros((0, self.token_dim), np.float32)
        start = time.perf_counter()
        _, index = self.knowledge_base.retrieve(
            queries, self.retrieval_k, exclude_source=site, round_num=self.round
        )  # (Q, k')
        # interleave ranks so every query keeps its best neighbours when the cap cuts the list
        unique = list(dict.fromkeys(index.T.reshape(-1).tolist()))[: self.prototypes_per_site]
        self._retrieval_seconds += time.perf_counter() - start
        return self.knowledge_base.get(np.asarray(unique, np.int64)).astype(np.float32)

    def submit(self, site: str, params: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Validate and stage one site's result; nothing global changes until :meth:`close_round`.

        Raises:
            InvalidUploadError: the upload broke the protocol (recorded in the round's history too).
        """
        try:
            if site in self._accepted:
                raise InvalidUploadError(f"{site} already submitted in round {self.round}.")
            if meta.get(MetaKey.TRAINING_FAILED):
                raise InvalidUploadError("the site's local training failed this round (details in the site's log).")
            num_samples = meta.get(MetaKey.NUM_SAMPLES)
            if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
                raise InvalidUploadError(f"{MetaKey.NUM_SAMPLES} must be a positive integer, got {num_samples!r}.")
            arrays = validate_upload(params, self.shared_shapes, self.private_keys) if self.shared_shapes else {}
            tokens = None
            if self.knowledge_base is not None:
                if meta.get(MetaKey.TOKENS) is None:
                    raise InvalidUploadError(f"{self.strategy.name} needs spectral tokens in meta.")
                tokens = validate_tokens(meta[MetaKey.TOKENS], self.token_dim, self.max_tokens_per_upload)
            try:  # the strategy's own payload beyond weights (FedDG-ELCFS: amplitude spectra)
                extra_bytes = self._aggregator.check_meta(site, meta)
            except ValueError as e:
                raise InvalidUploadError(str(e)) from e
        except InvalidUploadError as e:
            self._rejected[site] = str(e)
            raise
        if arrays:
            self._aggregator.accept(site, arrays, weight=float(num_samples), round_num=self.round, meta=meta)
        if tokens is not None:
            self._tokens[site] = tokens
        self._accepted[site] = {
            "num_samples": int(num_samples),
            "model_bytes": int(sum(a.nbytes for a in arrays.values())),
            "spectral_bytes": (int(tokens.nbytes) if tokens is not None else 0) + int(extra_bytes),
        }
        if meta.get(MetaKey.DP_EPSILON) is not None:  # (per round, total, delta) the site's DP filter reports
            self._accepted[site]["dp_epsilon"] = [float(v) for v in meta[MetaKey.DP_EPSILON]]

    def close_round(self, participants: Iterable[str] = (), metrics: Mapping[str, Mapping] | None = None) -> dict:
        """Aggregate the accepted uploads, update the knowledge base and start the next round.

        Args:
            participants: the sites that were asked to train (for the record).
            metrics: ``{site: {name: value}}`` the sites reported this round.

        Returns:
            the round's record (also appended to :attr:`history`).
        """
        start = time.perf_counter()
        if self._accepted and self.shared_shapes:
            # the strategy's aggregation (weighted mean: each key's dtype kept, see strategies/aggregate.py)
            self.global_params = self._aggregator.aggregate(self.global_params)
        aggregate_seconds = time.perf_counter() - start
        start = time.perf_counter()
        if self.knowledge_base is not None:
            for site, tokens in sorted(self._tokens.items()):  # site-name order, as the weights
                self.knowledge_base.add(tokens, source=site, round_num=self.round)
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
            "metrics": {k: dict(v) for k, v in (metrics or {}).items()},
            "knowledge_base_size": len(self.knowledge_base) if self.knowledge_base is not None else 0,
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

    # ------------------------------------------------------------------ persistence
    def save(self, state_dir: str | os.PathLike) -> None:
        """Write the global weights, knowledge base, queries and history; atomic (temp dir + rename)."""
        state_dir = os.fspath(state_dir)
        parent = os.path.dirname(os.path.abspath(state_dir))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".server_state_", dir=parent)
        np.savez(os.path.join(tmp, "global_params.npz"), **self.global_params)
        np.savez(os.path.join(tmp, "site_queries.npz"), **self.site_queries)
        if self.knowledge_base is not None:
            self.knowledge_base.save(os.path.join(tmp, "knowledge_base.npz"))
        with open(os.path.join(tmp, "server_state.json"), "w") as f:
            json.dump({"round": self.round, "strategy": self.strategy.name, "history": self.history}, f, indent=1)
        old = state_dir + ".old"
        if os.path.exists(state_dir):
            os.replace(state_dir, old)
        os.replace(tmp, state_dir)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, state_dir: str | os.PathLike) -> bool:
        """Resume from :meth:`save`'s output; returns False (state unchanged) when there is none.

        Raises:
            ValueError: the saved state belongs to another strategy or model.
        """
        meta_path = os.path.join(state_dir, "server_state.json")
        if not os.path.isfile(meta_path):
            return False
        with open(meta_path) as f:
            saved = json.load(f)
        if saved["strategy"] != self.strategy.name:
            raise ValueError(f"{state_dir} holds a {saved['strategy']!r} run, not {self.strategy.name!r}.")
        with np.load(os.path.join(state_dir, "global_params.npz")) as f:
            params = {k: f[k] for k in f.files}
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        if shapes != self.shared_shapes:
            raise ValueError(f"{state_dir} holds weights of another model (shared keys or shapes differ).")
        with np.load(os.path.join(state_dir, "site_queries.npz")) as f:
            queries = {k: f[k] for k in f.files}
        kb = None
        if self.knowledge_base is not None:
            kb = SpectralKnowledgeBase.load(os.path.join(state_dir, "knowledge_base.npz"))
        self.global_params, self.site_queries, self.round, self.history = (
            params,
            queries,
            int(saved["round"]),
            saved["history"],
        )
        if kb is not None:
            self.knowledge_base = kb
        self._reset_round()
        return True
