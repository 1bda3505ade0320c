"""The simulator launcher's fix of NVFlare 2.9.0's shared client-name race (omnifm_monai.flare.simulator)."""

import pickle
import threading
from types import SimpleNamespace


def _two_site_turns_interleaved(build_ctx: dict) -> dict[str, dict]:
    """NVFlare's client runner, two threads: each writes its site's name into the shared build context, then
    sends (pickles) it; here site-2 writes between site-1's write and send, as two sites starting together can."""
    sent, site_1_wrote, site_2_wrote = {}, threading.Event(), threading.Event()

    def turn(site: str, wait_before_send: threading.Event | None, done: threading.Event) -> None:
        build_ctx["client_name"] = site
        done.set()
        if wait_before_send is not None:
            wait_before_send.wait(5)
        sent[site] = pickle.loads(pickle.dumps(build_ctx))

    first = threading.Thread(target=turn, args=("site-1", site_2_wrote, site_1_wrote))
    first.start()
    site_1_wrote.wait(5)
    second = threading.Thread(target=turn, args=("site-2", None, site_2_wrote))
    second.start()
    first.join(5), second.join(5)
    return sent


def test_the_race_swaps_names_in_a_shared_dict_and_not_with_the_fix():
    from omnifm_monai.flare.simulator import PerThreadClientName

    shared = _two_site_turns_interleaved({"client_name": "site-2", "template": "t"})
    assert shared["site-1"]["client_name"] == "site-2"  # NVFlare 2.9.0: site-1's worker is told it is site-2
    fixed = _two_site_turns_interleaved(PerThreadClientName({"client_name": "site-2", "template": "t"}))
    assert fixed == {
        "site-1": {"client_name": "site-1", "template": "t"},
        "site-2": {"client_name": "site-2", "template": "t"},
    }
    assert all(type(ctx) is dict for ctx in fixed.values())  # the worker gets a plain dict


def test_shared_keys_stay_shared_and_a_thread_without_a_name_sees_the_original():
    import copy

    from omnifm_monai.flare.simulator import PerThreadClientName

    context = PerThreadClientName({"client_name": "site-9", "a": 1})
    context["b"] = 2
    seen = {}
    worker = threading.Thread(target=lambda: seen.update(context.snapshot()))
    worker.start(), worker.join(5)
    assert seen == {"client_name": "site-9", "a": 1, "b": 2}
    context["client_name"] = "site-1"
    assert context["client_name"] == context.get("client_name") == "site-1" and "client_name" in context
    assert copy.deepcopy(context) == {"client_name": "site-1", "a": 1, "b": 2}


def test_every_client_runner_gets_the_per_thread_context(tmp_path):
    from nvflare.private.fed.app.simulator.simulator_runner import SimulatorClientRunner

    from omnifm_monai.flare.simulator import PerThreadClientName, patch_client_runner

    patch_client_runner()
    patch_client_runner()  # idempotent: wrapping twice would still work, but it does not wrap twice
    args = SimpleNamespace(workspace=str(tmp_path), set=[], threads=2)
    runner = SimulatorClientRunner("", args, [], {}, SimpleNamespace(), {"client_name": "site-1"})
    assert isinstance(runner.build_ctx, PerThreadClientName) and runner.build_ctx["client_name"] == "site-1"


def test_the_job_starts_the_patched_simulator_and_an_interrupt_stops_its_tree(tmp_path, monkeypatch):
    import os

    import nvflare.private.fed.app.utils as nvflare_utils
    import pytest

    from omnifm_monai.jobs import builder

    class ExportedJob:
        name = "omnifm_job"

        def export_job(self, root):
            os.makedirs(os.path.join(root, self.name))

    started, stopped = [], []

    class InterruptedSimulator:
        def __init__(self, command, **kwargs):
            started.append((command, kwargs))
            self.pid = 12345

        def wait(self):
            raise KeyboardInterrupt

        def kill(self):
            stopped.append(("killed", self.pid))

    monkeypatch.setattr(builder.subprocess, "Popen", InterruptedSimulator)
    monkeypatch.setattr(nvflare_utils, "kill_child_processes", stopped.append)
    with pytest.raises(KeyboardInterrupt):
        builder._simulate(ExportedJob(), ["site-1", "site-2"], str(tmp_path / "ws"), threads=2)
    ((command, kwargs),) = started
    assert command[1:3] == ["-m", "omnifm_monai.flare.simulator"] and command[3].endswith("omnifm_job")
    assert command[4:] == ["-w", str(tmp_path / "ws"), "-c", "site-1,site-2", "-n", "2", "-t", "2", "-m", "100"]
    assert kwargs == {"start_new_session": True} and stopped == [12345, ("killed", 12345)]  # its tree, then it
    sites = [f"site-{i}" for i in range(1, 257)]  # beyond NVFlare's default of 100 sites
    with pytest.raises(KeyboardInterrupt):
        builder._simulate(ExportedJob(), sites, str(tmp_path / "ws"), threads=4)
    assert started[-1][0][-2:] == ["-m", "256"]
