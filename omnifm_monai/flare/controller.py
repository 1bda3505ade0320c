"""NVFlare server workflow running every strategy, with OmniFM's global spectral retrieval."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from typing import Any

from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.workflows.model_controller import ModelController

from omnifm_monai.flare.constants import MetaKey, TaskName
from omnifm_monai.flare.sampling import eligible_sites, sample_participants
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.strategies import get_strategy

__all__ = ["OmniFMController"]

FINAL_METRICS_FILE = "final_metrics.json"


class OmniFMController(ModelController):
    """Round loop: sample sites, send each its payload, validate and aggregate, persist, repeat.

    Each site gets its own task (``send_model(targets=[site])``) because OmniFM sends every site
    the prototypes retrieved for it. Client errors never stop the run: a crashed or timed-out
    site is skipped for the round (``ignore_result_error=True``), a malformed upload is rejected
    and logged; so is a site whose trainer process died (``--execution-mode external_process``:
    its task ends ``EXECUTION_EXCEPTION``, the next round starts a new trainer). When NVFlare
    fails or aborts the job (a site's NVFlare job process died, fewer than ``min_clients`` sites
    alive: docs/running.md, section 5), a round cut by it is neither closed nor saved (a
    resubmitted job redoes it). After the last round every site evaluates the final model (task
    ``validate``). A site that could not start (bad data, a class the federation does not name)
    answers every task with its error (``MetaKey.SITE_ERROR``): it is rejected each round with that
    reason, and ``final_metrics.json`` lists it under ``site_errors`` instead of ``metrics``.

    Args:
        strategy: a name in :data:`omnifm_monai.strategies.STRATEGIES`.
        num_rounds: total rounds (a resumed run continues up to this number).
        participation: fraction of sites sampled each round, in (0, 1].
        seed: seed of the participant sampling.
        private_keys: state-dict keys that stay at the sites (computed by the job builder from
            the network and the strategy).
        state_dir: where the global weights, knowledge base and history are persisted every
            round; a run that finds a state there resumes at the next round. Empty: the run dir.
        strategy_options: overrides of the strategy's fields (e.g. ``{"proximal_mu": 0.1}``).
        train_timeout: seconds a site may take for one round (0: no limit).
        final_evaluation: ask every site to evaluate the final model.
        server_options: keyword arguments of :class:`ServerCore` (``retrieval_k``,
            ``knowledge_base_size``, ``min_per_source``, ``max_age``, ...).
        late_sites: site -> the first round it is sampled in (a site joining a running job): before it, the
            participants are drawn from the other sites; from it on the site trains on the current global
            state with a fresh private state, and gets prototypes once its first upload is in (as every
            site). Every site takes part in the final evaluation.
    """

    def __init__(
        self,
        strategy: str = "omnifm",
        num_rounds: int = 5,
        participation: float = 1.0,
        seed: int = 0,
        private_keys: list[str] | None = None,
        state_dir: str = "",
        strategy_options: dict[str, Any] | None = None,
        train_timeout: int = 0,
        final_evaluation: bool = True,
        server_options: dict[str, Any] | None = None,
        persistor_id: str = "persistor",
        late_sites: dict[str, int] | None = None,
    ) -> None:
        super().__init__(persistor_id=persistor_id, ignore_result_error=True)
        if num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {num_rounds}.")
        if not 0.0 < participation <= 1.0:
            raise ValueError(f"participation must be in (0, 1], got {participation}.")
        # constructor arguments keep their names (NVFlare's job export reads them back)
        self._strategy = strategy
        self.strategy_options = strategy_options
        self.fl_strategy = get_strategy(strategy, **(strategy_options or {}))
        self.num_rounds = num_rounds
        self.participation = participation
        self.seed = seed
        self.private_keys = list(private_keys or [])
        self.state_dir = state_dir
        self.train_timeout = train_timeout
        self.final_evaluation = final_evaluation
        self.server_options = server_options
        self.late_sites = dict(late_sites or {})
        self.site_errors: dict[str, str] = {}  # site -> why it could not start (MetaKey.SITE_ERROR)

    def run(self) -> None:
        initial = self.load_model()
        params = self.fl_strategy.initial_params(initial.params)  # GPFL: its modules' initial values
        core = ServerCore(self.fl_strategy, params, self.private_keys, **(self.server_options or {}))
        state_dir = self.state_dir or os.path.join(self.get_run_dir(), "omnifm_state")
        if core.load(state_dir):
            self.info(f"resumed from {state_dir} at round {core.round}")
        sites = sorted(self.sample_clients())
        self.info(f"strategy {self.fl_strategy.name}: {len(sites)} sites, rounds {core.round}..{self.num_rounds - 1}")
        while core.round < self.num_rounds:
            if self.abort_signal.triggered:
                return
            eligible = eligible_sites(sites, core.round, self.late_sites)  # all but sites joining later
            chosen = sample_participants(len(eligible), self.participation, core.round, self.seed)
            participants = [eligible[i] for i in chosen]
            metrics = self._broadcast(core, participants, TaskName.TRAIN)
            if self.abort_signal.triggered:  # the job was aborted mid-round: the round is not done
                self.warning(
                    f"job aborted during round {core.round}: the round is neither closed nor saved "
                    f"({len(metrics)} of {len(participants)} results in); a resubmitted job redoes it"
                )
                return
            record = core.close_round(participants, metrics)
            persisted = {k: v for k, v in core.global_params.items() if k in initial.params}  # not GPFL's modules
            self.save_model(FLModel(params=persisted, params_type=ParamsType.FULL))
            core.save(state_dir)
            self.info(
                f"round {record['round']}: accepted {sorted(record['accepted'])}, rejected {record['rejected']}, "
                f"no result {record['no_result']}, knowledge base {record['knowledge_base_size']}"
            )
        if self.final_evaluation:
            final = self._broadcast(core, sites, TaskName.VALIDATE)
            if self.abort_signal.triggered:
                self.warning("job aborted during the final evaluation: final metrics not written")
                return
            with open(os.path.join(state_dir, FINAL_METRICS_FILE), "w") as f:
                json.dump(
                    {
                        "round": core.round,
                        "strategy": self.fl_strategy.name,
                        "metrics": final,
                        "site_errors": self.site_errors,  # sites that could not start: no metrics above
                    },
                    f,
                    indent=1,
                )
            self.info(f"final evaluation: {final}")

    def _broadcast(self, core: ServerCore, sites: list[str], task_name: str) -> dict[str, dict]:
        """Send every site its own payload, wait for all results; returns ``{site: metrics}``."""
        metrics: dict[str, dict] = {}
        for site in sites:
            params, meta = core.payload(site)
            model = FLModel(
                params=params,
                params_type=ParamsType.FULL,
                current_round=core.round,
                total_rounds=self.num_rounds,
                meta=meta,
            )
            self.send_model(
                task_name=task_name,
                data=model,
                targets=[site],
                timeout=self.train_timeout,
                callback=partial(self._on_result, core, metrics, task_name),
            )
        while self.get_num_standing_tasks():
            if self.abort_signal.triggered:
                break
            time.sleep(self._task_check_period)
        return metrics

    def _on_result(self, core: ServerCore, metrics: dict, task_name: str, result: FLModel) -> bool:
        site = result.meta.get("client_name", "unknown")
        error = result.meta.get(MetaKey.SITE_ERROR)
        if error and site not in self.site_errors:
            self.site_errors[site] = str(error)
            self.error(f"{site} cannot take part: {error}")
        if not error:
            metrics[site] = core.clean_site_metrics(site, result.metrics)  # JSON-safe: history, final_metrics.json
        if task_name != TaskName.TRAIN:
            return True
        try:
            core.submit(site, result.params or {}, result.meta, metrics=result.metrics)
        except InvalidUploadError as e:
            self.warning(f"rejected upload from {site} in round {core.round}: {e}")
            return False
        return True
