"""The strategy comparison of the main job: its options and what a run counts (without the simulator)."""

import sys


def test_main_job_defaults_and_forwarded_options():
    from nvflare_jobs.main_job import parse_args

    args, job_args, settings = parse_args(["--strategies", "local", "omnifm", "--clients", "10", "--image-size", "28"])
    assert args.strategies == ["local", "omnifm"]
    assert (settings.num_clients, settings.num_rounds, settings.local_epochs) == (10, 8, 3)
    assert settings.image_size == 28 and settings.threads == 10
    assert job_args[-2:] == ["--threads", "10"]


def test_a_new_main_job_run_never_reports_an_earlier_runs_state(tmp_path, monkeypatch):
    import subprocess

    from nvflare_jobs import main_job
    from omnifm_monai.jobs import comparison

    stale = tmp_path / "omnifm" / "state" / "server"
    stale.mkdir(parents=True)
    (stale / "server_state.json").write_text('{"strategy": "omnifm", "history": [{"round": 0}]}')
    (stale / "final_metrics.json").write_text('{"metrics": {"site-1": {"restricted_accuracy": 0.99}}}')
    launched, real_popen = [], subprocess.Popen

    def simulator_that_fails_at_once(command, **kwargs):
        launched.append(command)
        return real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kwargs)

    monkeypatch.setattr(comparison.subprocess, "Popen", simulator_that_fails_at_once)
    _, job_args, settings = main_job.parse_args(["--clients", "2", "--rounds", "1"])
    result, problems = comparison.run_strategy("omnifm", job_args, settings, str(tmp_path))
    assert launched and result is None  # the stale 0.99 was not picked up as this run's result
    assert "simulator exited with code 3" in problems
    assert not (stale / "final_metrics.json").exists()
