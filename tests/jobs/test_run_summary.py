"""The end-of-run summary, from the job's results as the server wrote them (no simulator run)."""

import json

from omnifm_monai.jobs import summarize_run


def _write(state_dir, final=None, history=()):
    state_dir.mkdir(parents=True)
    (state_dir / "server_state.json").write_text(json.dumps({"history": list(history)}))
    if final is not None:
        (state_dir / "final_metrics.json").write_text(json.dumps(final))


def test_a_site_that_could_not_start_is_named_with_its_error(tmp_path):
    # Prepare: site-2 refused its data at start; site-3 crashed in round 1
    rounds = [
        {"round": 0, "rejected": {"site-2": "site-2 failed at start: no data"}, "no_result": []},
        {"round": 1, "rejected": {}, "no_result": ["site-3"]},
    ]
    final = {"metrics": {"site-1": {"accuracy": 0.5}}, "site_errors": {"site-2": "site-2 failed at start: no data"}}
    _write(tmp_path / "server", final, rounds)
    (tmp_path / "ws" / "site-3").mkdir(parents=True)
    (tmp_path / "ws" / "site-3" / "log.txt").write_text("Traceback ...")
    # Execute
    summary = summarize_run(str(tmp_path / "server"), ["site-1", "site-2", "site-3"], "accuracy", str(tmp_path / "ws"))
    # Assert
    assert not summary.ok and summary.failed == ["site-2", "site-3"]
    assert summary.sites["site-1"] == "ok, final accuracy 0.5000"
    assert summary.sites["site-2"] == "failed at start: no data"
    assert summary.sites["site-3"].startswith("no final evaluation (round 1: no result")
    assert str(tmp_path / "ws" / "site-3" / "log.txt") in summary.sites["site-3"]
    assert summary.text().splitlines()[0] == "OmniFM job summary: 2 of 3 site(s) FAILED"


def test_a_job_that_never_finished(tmp_path):
    _write(tmp_path / "server")
    summary = summarize_run(str(tmp_path / "server"), ["site-1"])
    assert not summary.ok and "the job did not finish" in summary.sites["site-1"]
    _write(tmp_path / "done", {"metrics": {"site-1": {"dice": 0.7}}, "site_errors": {}})
    assert summarize_run(str(tmp_path / "done"), ["site-1"]).ok
