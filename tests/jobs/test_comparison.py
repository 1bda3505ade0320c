"""The strategy comparison of the main job: its options and what a run counts (without the simulator)."""

import os
import sys

import pytest


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
    assert (settings.num_clients, settings.num_rounds, settings.local_epochs) == (10, 24, 3)  # the fixed task's
    assert settings.image_size == 28 and settings.threads == 10
    assert job_args[-2:] == ["--threads", "10"]
    assert (args.reference_epochs, args.patience) == (100, 30)  # the fixed task's references
    assert parse_args(["--scenario", "cross_modality_hard"])[0].reference_epochs == 0  # own label spaces: none
    assert parse_args(["--scenario", "cross_modality_hard"])[2].num_rounds == 8  # and the shorter budget
    assert parse_args(["--rounds", "5"])[2].num_rounds == 5  # the user's rounds win


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


def test_the_demo_is_the_fixed_task_and_the_earlier_demo_is_one_option_away():
    import json

    from omnifm_monai.jobs import comparison_job_args
    from omnifm_monai.jobs.builder import federation_for

    _, settings = comparison_job_args([])  # the default demo: the fixed task, normal or calcification
    assert (settings.scenario, settings.site_sizes) == ("cross_modality_shared", "400,400,120,120,120,120")
    assert json.loads(open(settings.label_map).read()) == {"phantom": {"0": "normal", "3": "calcification"}}
    settings.site_sizes, settings.num_clients = "10,10", 2  # the same question on a tiny federation
    federation = federation_for(settings)
    assert federation.class_names == ("normal", "calcification")
    assert all(set(client.splits["train"][1].tolist()) <= {0, 1} for client in federation.clients)
    _, settings = comparison_job_args(["--label-map", "mine.json"])  # a question of one's own wins
    assert (settings.scenario, settings.label_map) == ("cross_modality_shared", "mine.json")
    _, settings = comparison_job_args(["--scenario", "cross_modality_shared", "--clients", "10"])  # equal sizes
    assert (settings.scenario, settings.site_sizes) == ("cross_modality_shared", "")
    _, settings = comparison_job_args(["--scenario", "cross_modality_hard"])  # each site its own label space
    assert (settings.site_sizes, settings.label_map, settings.samples_per_client) == ("", "", 400)
    for other in (["--task", "segmentation"], ["--federation-data", "some/folder"]):  # they keep their scenarios
        _, settings = comparison_job_args(other)
        assert (settings.scenario, settings.label_map) == ("cross_modality_hard", "")


def test_the_references_print_one_line_each_not_one_per_iteration(tmp_path, monkeypatch, capsys):
    import logging

    from omnifm_monai.jobs import comparison

    def fake_training(settings, out, *, max_epochs, patience):
        logging.getLogger("monai.handlers.StatsHandler").info("Epoch: 1/100, Iter: 1/7 -- train_loss: 0.6")
        logging.getLogger("monai.bundle.workflows").warning("Logging file is set to False, skipping logging.")
        record = {"epochs": 40, "best_epoch": 10, "best_val": 1.0}
        return {"site-1": {"accuracy": 1.0}}, ({"site-1": record} if "local" in out else record)

    monkeypatch.setattr(comparison, "local_to_convergence", fake_training)
    monkeypatch.setattr(comparison, "pooled_to_convergence", fake_training)
    stats_logger, seen = logging.getLogger("monai.handlers.StatsHandler"), []
    workflow_logger = logging.getLogger("monai.bundle.workflows")
    handler, level = logging.Handler(), stats_logger.level
    handler.emit = seen.append
    stats_logger.addHandler(handler)
    workflow_logger.addHandler(handler)
    stats_logger.setLevel(logging.INFO)
    try:
        results = comparison.run_references(None, str(tmp_path), max_epochs=100, patience=30)
        dropped = list(seen)
        stats_logger.info("after the references")
    finally:
        stats_logger.removeHandler(handler)
        workflow_logger.removeHandler(handler)
        stats_logger.setLevel(level)
    printed = capsys.readouterr().out
    assert [r.strategy for r in results] == ["local (to convergence)", "pooled (to convergence)"]
    assert "best epoch / epochs run: site-1 10/40" in printed and "best epoch / epochs run: pooled 10/40" in printed
    assert dropped == []  # the iteration lines were dropped while the references trained
    assert [r.getMessage() for r in seen] == ["after the references"]  # and only then


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


def test_the_main_job_runs_the_recalibrated_fedbn_beside_the_strategies_unless_told_not_to(tmp_path, monkeypatch):
    from nvflare_jobs import main_job
    from omnifm_monai.jobs import comparison

    launched = []

    def fake_run(strategy, job_args, settings, out_dir, label=""):
        launched.append((label, strategy, job_args[len(base) :]))
        return None, ["not simulated in this test"]

    monkeypatch.setattr(comparison, "run_strategy", fake_run)
    args, base, settings = main_job.parse_args(["--strategies", "omnifm", "--reference-epochs", "0"])
    assert main_job.main(["--strategies", "omnifm", "--reference-epochs", "0", "--out", str(tmp_path)]) == 1
    assert launched == [
        ("omnifm", "omnifm", []),
        ("fedbn + recalibrated norms", "fedbn", ["--strategy-options", '{"recalibrate_norms":true}']),
    ]
    launched.clear()
    main_job.main(["--strategies", "omnifm", "--variants", "{}", "--reference-epochs", "0", "--out", str(tmp_path)])
    assert [label for label, _, _ in launched] == ["omnifm"]


def test_the_main_job_refuses_two_runs_into_one_folder_in_one_line(capsys):

    from nvflare_jobs import main_job

    with pytest.raises(SystemExit):
        main_job.parse_args(["--strategies", "fedbn", "--variants", '{"fedbn": ["fedbn", "--rounds", "2"]}'])
    assert "would share the folder(s) ['fedbn']" in capsys.readouterr().err


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_an_interrupted_strategy_run_stops_the_simulator_in_its_own_session(tmp_path, monkeypatch, stop):
    import signal
    import subprocess
    import time

    import psutil

    from nvflare_jobs import main_job
    from omnifm_monai.jobs import comparison

    # Prepare: a job that starts a "simulator" in a session of its own (as the builder does) and waits
    pid_file, real_popen, real_sleep = tmp_path / "simulator.pid", subprocess.Popen, time.sleep
    job = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(120)\n"
    )

    def job_that_starts_a_simulator(command, **kwargs):
        return real_popen([sys.executable, "-c", job], **kwargs)

    def interrupt_once_the_simulator_runs(seconds):
        while not pid_file.exists() or not pid_file.read_text():
            real_sleep(0.05)
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler or `kill PID` sends
        raise AssertionError("SIGTERM did not stop the job")

    monkeypatch.setattr(comparison.subprocess, "Popen", job_that_starts_a_simulator)
    monkeypatch.setattr(comparison.time, "sleep", interrupt_once_the_simulator_runs)
    _, job_args, settings = main_job.parse_args(["--clients", "2", "--rounds", "1"])
    # Execute (without the fix, SIGTERM would end pytest itself: outside the job it does nothing)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with pytest.raises(KeyboardInterrupt if stop == "ctrl-c" else SystemExit) as raised:
            comparison.run_strategy("omnifm", job_args, settings, str(tmp_path))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stop == "sigterm":
        assert raised.value.code == 128 + signal.SIGTERM
    # Assert
    simulator = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(simulator) and psutil.Process(simulator).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the simulator outlived the interrupted main job"
        real_sleep(0.05)
