"""OmniFMController's round loop without NVFlare's runtime: an abort mid-round leaves the round open."""

from __future__ import annotations

import json

import numpy as np
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.fl_model import FLModel

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.controller import OmniFMController

SITES = ["site-1", "site-2"]


class _LoopbackController(OmniFMController):
    """Answers every task at once with a fixed upload; triggers an abort in ``abort_in_round``."""

    def __init__(self, abort_in_round: int, **kwargs):
        super().__init__(strategy="fedavg", final_evaluation=True, **kwargs)
        self.abort_in_round = abort_in_round
        self.abort_signal = Signal()
        self.saved_models = 0

    def load_model(self) -> FLModel:
        return FLModel(params={"w": np.zeros(2, np.float32)})

    def save_model(self, model: FLModel) -> None:
        self.saved_models += 1

    def sample_clients(self, num_clients=None):
        return list(SITES)

    def get_num_standing_tasks(self) -> int:
        return 0

    def send_model(self, task_name, data, targets, timeout, callback):
        site = targets[0]
        if data.current_round == self.abort_in_round and site == "site-2":
            self.abort_signal.trigger(True)  # the job is aborted before site-2 answers
            return
        upload = {MetaKey.NUM_SAMPLES: 2, "client_name": site}
        callback(FLModel(params={"w": np.ones(2, np.float32)}, metrics={"accuracy": 0.5}, meta=upload))

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings = [*getattr(self, "warnings", []), msg]


def test_a_round_cut_by_an_abort_is_neither_closed_nor_saved(tmp_path):
    # Prepare: 3 rounds; the job is aborted during round 1's broadcast (site-1 answered, site-2 not)
    controller = _LoopbackController(abort_in_round=1, num_rounds=3, state_dir=str(tmp_path))
    # Execute
    controller.run()
    # Assert: only round 0 is on disk, the next run starts at round 1, no final metrics
    state = json.loads((tmp_path / "server_state.json").read_text())
    assert [record["round"] for record in state["history"]] == [0]
    assert state["round"] == 1 and controller.saved_models == 1
    assert not (tmp_path / "final_metrics.json").exists()
    assert "aborted during round 1" in controller.warnings[0]


def test_a_run_without_abort_closes_every_round(tmp_path):
    controller = _LoopbackController(abort_in_round=-1, num_rounds=2, state_dir=str(tmp_path))
    controller.run()
    state = json.loads((tmp_path / "server_state.json").read_text())
    assert [record["round"] for record in state["history"]] == [0, 1]
    assert sorted(state["history"][1]["accepted"]) == SITES
    assert json.loads((tmp_path / "final_metrics.json").read_text())["round"] == 2


class _RecordingController(_LoopbackController):
    """The loopback over three sites, recording what each site is sent, round by round."""

    def __init__(self, **kwargs):
        super().__init__(abort_in_round=-1, **kwargs)
        self.sent: list[tuple[str, int, str, np.ndarray]] = []  # (task, round, site, w)

    def sample_clients(self, num_clients=None):
        return ["site-1", "site-2", "site-3"]

    def send_model(self, task_name, data, targets, timeout, callback):
        self.sent.append((task_name, data.current_round, targets[0], np.asarray(data.params["w"])))
        super().send_model(task_name, data, targets, timeout, callback)


def test_a_late_site_is_kept_out_of_sampling_until_its_round_then_gets_the_current_global_state(tmp_path):
    # Prepare: site-3 joins in round 2 of 3; every upload is w = 1, so the global state is 1 after round 0
    controller = _RecordingController(num_rounds=3, state_dir=str(tmp_path), late_sites={"site-3": 2})
    # Execute
    controller.run()
    # Assert
    history = json.loads((tmp_path / "server_state.json").read_text())["history"]
    assert [sorted(record["accepted"]) for record in history] == [
        ["site-1", "site-2"],
        ["site-1", "site-2"],
        ["site-1", "site-2", "site-3"],
    ]
    first = next((r, w) for task, r, site, w in controller.sent if site == "site-3")
    assert first[0] == 2 and np.array_equal(first[1], np.ones(2, np.float32))  # the current state, not the initial
    final = json.loads((tmp_path / "final_metrics.json").read_text())["metrics"]
    assert sorted(final) == ["site-1", "site-2", "site-3"]  # a late site is evaluated at the end like the others
