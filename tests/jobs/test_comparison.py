"""The strategy comparison of the main job: its options and what a run counts (without the simulator)."""

import sys


def test_main_job_defaults_and_forwarded_options():
    from nvflare_jobs.main_job import parse_args

    args, job_args, settings = parse_args(
        [
            "--strategies",
            "local",
            "omnifm",
            "--clients",
            "10",
            "--image-size",
            "28",
            "--scenario",
            "cross_modality_shared",
        ]
    )
    assert args.strategies == ["local", "omnifm"]
    assert (settings.num_clients, settings.num_rounds, settings.local_epochs) == (10, 8, 3)
    assert settings.image_size == 28 and settings.threads == 10
    assert job_args[-2:] == ["--threads", "10"]
    assert args.reference_epochs == 8 * 3  # the fixed task's references: capped at rounds x local epochs
    assert parse_args([])[0].reference_epochs == 0  # the default demo (own label spaces): none


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


def test_the_fixed_task_demo_is_one_option_away():
    from omnifm_monai.jobs import comparison_job_args

    _, settings = comparison_job_args([])  # the default demo: each site its own label space
    assert (settings.scenario, settings.site_sizes, settings.samples_per_client) == ("cross_modality_hard", "", 400)
    _, settings = comparison_job_args(["--scenario", "cross_modality_shared"])
    assert (settings.scenario, settings.site_sizes) == ("cross_modality_shared", "400,400,120,120,120,120")
    _, settings = comparison_job_args(["--scenario", "cross_modality_shared", "--clients", "10"])  # equal sizes
    assert (settings.scenario, settings.site_sizes) == ("cross_modality_shared", "")
    _, settings = comparison_job_args(["--task", "segmentation"])  # other tasks keep their own scenarios
    assert settings.scenario == "cross_modality_hard"


def test_reference_rows_and_the_verdict():
    from omnifm_monai.reporting import RunResult, comparison_rows, markdown_table, verdict_lines

    # Prepare: two federated runs with one round each, and a reference without rounds
    def round_of(value):
        return [{"metrics": {"site-1": {"restricted_accuracy": value}}, "accepted": {}}]

    results = [
        RunResult("fedavg", round_of(0.5), {"site-1": {"restricted_accuracy": 0.50}}),
        RunResult("omnifm", round_of(0.6), {"site-1": {"restricted_accuracy": 0.62}}),
        RunResult("local (to convergence)", [], {"site-1": {"restricted_accuracy": 0.65}}),
    ]
    # Execute
    rows = comparison_rows(results, ("restricted_accuracy",))
    lines = verdict_lines(rows)
    table = markdown_table(rows, ("restricted_accuracy",))
    # Assert
    assert lines[0] == "Best by acc (own labels): local (to convergence) (65.0)."
    assert "OmniFM vs local (to convergence): -3.0 points (below)." in lines
    assert "OmniFM vs fedavg: +12.0 points (above)." in lines
    assert "| local (to convergence) | 65.0 | n/a | 65.0 | - | nan | - | - |" in table
