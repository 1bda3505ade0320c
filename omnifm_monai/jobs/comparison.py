"""The strategy comparison of the main job: every strategy on the same federation in the NVFlare simulator.

Each strategy runs as its own simulator process (``python -m nvflare_jobs.omnifm_job``, its log in
``<out>/<strategy>/simulator.log``); progress is read from the server's persisted round history. A
run counts only if every site returned its final evaluation and no site logged a traceback: the
simulator can exit 0 while a client crashed. ``python -m nvflare_jobs.main_job`` is the command line.

The main job's default is the fixed task on the phantom (:data:`FIXED_TASK_DEMO`): every site asked the same
question, normal or calcification (:data:`FIXED_TASK_LABEL_MAP`), one modality per site, two large and four
small sites, with two references trained centrally to convergence (:mod:`omnifm_monai.jobs.references`): each
site alone and all sites pooled. The question was chosen on the validation splits of those references
(docs/results.md). ``--scenario cross_modality_hard`` runs the earlier demo, one label space per modality;
other tasks keep their own scenarios.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import time

from omnifm_monai.flare.process_tree import sigterm_raises_exit, stop_process_tree
from omnifm_monai.jobs.builder import REPO_ROOT, federation_for, job_site_names
from omnifm_monai.jobs.cross_site import cross_site_section, run_cross_site
from omnifm_monai.jobs.references import LOCAL_CONVERGED, POOLED_CONVERGED, local_to_convergence, pooled_to_convergence
from omnifm_monai.jobs.run_summary import summarize_run
from omnifm_monai.jobs.settings import JobSettings, parse_job_args
from omnifm_monai.jobs.variants import run_folder, strategy_runs
from omnifm_monai.reporting import (
    RunResult,
    comparison_rows,
    format_metric,
    load_run,
    markdown_table,
    verdict_lines,
    write_report,
)
from omnifm_monai.tasks import get_task

__all__ = [
    "DEFAULT_STRATEGIES",
    "FIXED_TASK_DEMO",
    "FIXED_TASK_LABEL_MAP",
    "FIXED_TASK_REFERENCE_EPOCHS",
    "FIXED_TASK_ROUNDS",
    "MAIN_JOB_DEFAULTS",
    "REFERENCE_PATIENCE",
    "comparison_job_args",
    "run_comparison",
    "run_references",
    "run_logged_errors",
    "run_strategy",
]

DEFAULT_STRATEGIES = ("local", "fedavg", "fedper", "fedbn", "omnifm")
# every comparison's budget unless the command line says otherwise (the fixed task: FIXED_TASK_ROUNDS rounds)
MAIN_JOB_DEFAULTS = ["--clients", "6", "--rounds", "8", "--local-epochs", "3", "--samples-per-client", "400",
                     "--image-size", "32"]  # fmt: skip
# the demo's federation when the command line names none: the fixed task, 2 large and 4 small sites
# (1280 phantom images instead of 6 x 400, which pays for the two convergence references: docs/running.md)
FIXED_TASK_DEMO = ["--scenario", "cross_modality_shared", "--site-sizes", "400,400,120,120,120,120"]
# the fixed task's rounds unless --rounds is given: 8 rounds x 3 epochs under-trained every row (the small
# sites learn after 40-70 epochs); over 24 the mean validation accuracy still rose, 79 at round 8 to 86
# (OmniFM, 5 seeds: docs/benchmarks.md, "The fixed-task phantom at 24 rounds")
FIXED_TASK_ROUNDS = 24
# the fixed-task phantom's question when no --label-map is given: normal or calcification, chosen on the
# references' validation splits (all six findings, or a tumour, stay near chance at 32 px: docs/results.md)
FIXED_TASK_LABEL_MAP = REPO_ROOT / "nvflare_jobs" / "label_maps" / "phantom_calcification.json"
# the convergence references' epoch cap and patience on the fixed task: a small site (72 training images,
# 2 steps an epoch) starts to learn after 40-70 epochs, so a shorter patience stops it at chance
FIXED_TASK_REFERENCE_EPOCHS, REFERENCE_PATIENCE = 100, 30


def run_logged_errors(workspace: str) -> list[str]:
    """Lines with a traceback or an ERROR in any log of a simulator workspace."""
    bad = []
    for path in glob.glob(os.path.join(workspace, "**", "log*.txt"), recursive=True):
        with open(path, errors="replace") as f:
            for line in f:
                if "Traceback (most recent call last)" in line or " - ERROR - " in line:
                    bad.append(f"{path}: {line.strip()}")
    return bad


def _progress(state_root: str, metric: str) -> tuple[int, float]:
    """Rounds done so far and the mean ``metric`` of the last one, from the server's persisted history."""
    path = os.path.join(state_root, "server", "server_state.json")
    try:
        with open(path) as f:
            history = json.load(f)["history"]
    except (OSError, ValueError, KeyError):
        return 0, float("nan")
    if not history:
        return 0, float("nan")
    values = [m.get(metric) for m in history[-1]["metrics"].values()]
    values = [v for v in values if v is not None]
    return len(history), (sum(values) / len(values) if values else float("nan"))


def run_strategy(
    strategy: str, job_args: list[str], settings: JobSettings, out_dir: str, label: str = ""
) -> tuple[RunResult | None, list[str]]:
    """Simulate one strategy in a subprocess; returns its result (None if it failed) and the problems seen.

    ``label`` (default: the strategy) names the run's row in the report and its folder under ``out_dir``
    (:func:`~omnifm_monai.jobs.variants.run_folder`), for variants of one strategy run with extra ``job_args``.
    The folder starts empty: the controller would otherwise resume an earlier run's server state and report
    its results again.
    """
    label = label or strategy
    root = os.path.join(out_dir, run_folder(label))
    shutil.rmtree(root, ignore_errors=True)
    state_root, workspace = os.path.join(root, "state"), os.path.join(root, "workspace")
    command = [sys.executable, "-m", "nvflare_jobs.omnifm_job", *job_args]
    command += ["--strategy", strategy, "--state-root", state_root, "--workspace", workspace]
    os.makedirs(root, exist_ok=True)
    start = time.perf_counter()
    shown = -1
    headline = get_task(settings.task).headline_metric
    with open(os.path.join(root, "simulator.log"), "w") as log, sigterm_raises_exit():
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                time.sleep(2)
                done, value = _progress(state_root, headline)
                if done != shown and done > 0:
                    shown = done
                    print(
                        f"  {label:>7}: round {done}/{settings.num_rounds} done, "
                        f"{time.perf_counter() - start:5.0f} s, "
                        f"mean {headline} of the received model {format_metric(headline, value)}",
                        flush=True,
                    )
        except BaseException:  # interrupted or terminated: stop the job, its simulator and every worker, by pid
            stop_process_tree(process)
            raise
    wall = time.perf_counter() - start
    problems = run_logged_errors(workspace)
    if process.returncode:
        problems.append(f"simulator exited with code {process.returncode}")
    try:
        result = load_run(state_root, label, wall)
    except FileNotFoundError as e:
        return None, [*problems, str(e)]
    summary = summarize_run(os.path.join(state_root, "server"), job_site_names(settings), workspace=workspace)
    problems += [f"{site}: {summary.sites[site]}" for site in summary.failed]  # no final evaluation, and why
    return (result if not problems else None), problems


def _given(options: list[str], *flags: str) -> bool:
    return any(o == f or o.startswith(f + "=") for o in options for f in flags)


def comparison_job_args(forwarded: list[str]) -> tuple[list[str], JobSettings]:
    """The job options of every run: :data:`MAIN_JOB_DEFAULTS` first, so any in ``forwarded`` win.

    A classification comparison on the phantom (no ``--federation-data`` or ``--dataset-dir``) is the fixed
    task unless ``--scenario`` says otherwise; there it asks :data:`FIXED_TASK_LABEL_MAP`'s question unless
    ``--label-map`` is given, :data:`FIXED_TASK_ROUNDS` rounds unless ``--rounds`` is given, and the unequal
    site sizes of :data:`FIXED_TASK_DEMO` unless ``--clients``, ``--samples-per-client`` or ``--site-sizes`` is
    given.

    Args:
        forwarded: options of ``python -m nvflare_jobs.omnifm_job`` (``--clients``, ``--rounds``, ...).

    Returns:
        ``(job_args, settings)``; without ``--threads`` in ``forwarded``, one simulator thread per site.
    """
    given, _ = parse_job_args(forwarded)
    phantom = given.task == "classification" and not _given(forwarded, "--federation-data", "--dataset-dir")
    scenario_given = _given(forwarded, "--scenario")
    demo = FIXED_TASK_DEMO[:2] if phantom and not scenario_given else []
    if phantom and (given.scenario == FIXED_TASK_DEMO[1] or not scenario_given):
        if not _given(forwarded, "--clients", "--samples-per-client", "--site-sizes"):
            demo += FIXED_TASK_DEMO[2:]
        if not _given(forwarded, "--label-map"):
            demo += ["--label-map", str(FIXED_TASK_LABEL_MAP)]
        demo += ["--rounds", str(FIXED_TASK_ROUNDS)]  # a --rounds in ``forwarded`` comes later and wins
    job_args = [*MAIN_JOB_DEFAULTS, *demo, *forwarded]
    settings, _ = parse_job_args(job_args)
    if "--threads" not in forwarded:  # one simulator process per site
        job_args += ["--threads", str(settings.num_clients)]
        settings.threads = settings.num_clients
    return job_args, settings


@contextlib.contextmanager
def _epoch_logs_silenced():
    """Drop the INFO lines of MONAI's StatsHandler (one per iteration) and of ignite's early stopping, and the
    bundle workflow's notice that it has no logging file, while the references train; their levels stay, so
    StatsHandler does not warn that it cannot log."""

    def above_info(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO

    def not_the_logging_file_notice(record: logging.LogRecord) -> bool:  # we build the bundles without one
        return not record.getMessage().startswith("Logging file is set to False")

    filters = {
        "monai.handlers.StatsHandler": above_info,
        "ignite.handlers.early_stopping.EarlyStopping": above_info,
        "monai.bundle.workflows": not_the_logging_file_notice,
    }
    for name, keep in filters.items():
        logging.getLogger(name).addFilter(keep)
    try:
        yield
    finally:
        for name, keep in filters.items():
            logging.getLogger(name).removeFilter(keep)


def _stopping_line(records: dict) -> str:
    """``site-1 10/40, ...``: the best validation epoch and the epochs run, per site (or for the pooled data)."""
    records = {"pooled": records} if "epochs" in records else records
    return ", ".join(f"{name} {r['best_epoch']}/{r['epochs']}" for name, r in records.items())


def run_references(settings: JobSettings, out: str, *, max_epochs: int, patience: int) -> list[RunResult]:
    """Each site alone and all sites pooled, trained to convergence (``max_epochs`` cap, early stopping with
    ``patience``); one result each, without rounds."""
    results = []
    for label, train, folder in (
        (LOCAL_CONVERGED, local_to_convergence, "reference_local"),
        (POOLED_CONVERGED, pooled_to_convergence, "reference_pooled"),
    ):
        print(f"[reference] {label}: at most {max_epochs} epochs, patience {patience}", flush=True)
        start = time.perf_counter()
        with _epoch_logs_silenced():
            per_site, records = train(settings, os.path.join(out, folder), max_epochs=max_epochs, patience=patience)
        results.append(RunResult(label, [], per_site, {}, time.perf_counter() - start))
        stopping = _stopping_line(records)
        print(f"  {label}: {time.perf_counter() - start:.0f} s; best epoch / epochs run: {stopping}", flush=True)
    return results


def run_comparison(
    strategies: list[str],
    job_args: list[str],
    settings: JobSettings,
    out: str,
    *,
    variants: dict[str, list[str]] | None = None,
    reference_epochs: int = 0,
    patience: int = 5,
    cross_site: bool = False,
) -> int:
    """Simulate each strategy in turn, print the comparison table and write the report under ``out``.

    Args:
        strategies: the strategies, each its own simulation.
        variants: then these, ``{label: [strategy, job options...]}`` (:mod:`omnifm_monai.jobs.variants`).
        job_args: the job options of every run (:func:`comparison_job_args`).
        settings: the same options, parsed.
        out: the report folder.
        reference_epochs: > 0: also the two convergence references (:func:`run_references`) with this cap.
        patience: their early stopping.
        cross_site: also score every site's final model on every site's test split, per strategy
            (:mod:`omnifm_monai.jobs.cross_site`), as a section of ``report.md``.

    Returns:
        the exit status: 1 if any strategy failed, else 0.
    """
    runs = strategy_runs(strategies, variants)
    data = settings.federation_data or "embedded phantom"
    budget = (
        f"{settings.num_rounds} rounds x {settings.local_epochs} local epoch(s), participation "
        f"{settings.participation}, image size {settings.image_size}, seed {settings.seed}"
    )
    print(
        f"OmniFM-MONAI main job: {settings.num_clients} sites, {settings.scenario} on {data}, {budget}; "
        f"runs {[run.label for run in runs]}",
        flush=True,
    )
    results, failures, matrices = [], {}, {}
    for index, run in enumerate(runs, 1):
        print(f"[{index}/{len(runs)}] {run.label}", flush=True)
        result, problems = run_strategy(run.strategy, [*job_args, *run.job_args], settings, out, label=run.label)
        if result is None:
            failures[run.label] = problems
            print(f"  {run.label} FAILED:\n    " + "\n    ".join(problems[:10]), flush=True)
        else:
            results.append(result)
            if cross_site:  # a diagnostic: its failure is reported, the strategy's result stays
                root = os.path.join(out, run.folder)
                try:
                    matrices[run.label] = run_cross_site(os.path.join(root, "state"), root)
                    print(f"  {run.label} cross-site:\n" + matrices[run.label]["markdown"], flush=True)
                except Exception as e:
                    failures[f"{run.label} cross-site"] = [f"{type(e).__name__}: {e}"]
                    print(f"  {run.label} cross-site FAILED: {type(e).__name__}: {e}", flush=True)
    if reference_epochs > 0:
        results += run_references(settings, out, max_epochs=reference_epochs, patience=patience)
    if results:
        task = get_task(settings.task)
        title = f"OmniFM-MONAI {task.name}: {settings.scenario} on {data}, {settings.num_clients} sites"
        notes = (
            f"{budget}. Metrics are the final model's, per site on its own test split, averaged over sites"
            + (
                "; 'own labels' restricts the argmax to the site's label space, 'all labels' takes it over the union"
                if "restricted_accuracy" in task.report_metrics
                else ""
            )
            + ". `local` is each site training alone for the same budget; "
            + f"`{LOCAL_CONVERGED}` and `{POOLED_CONVERGED}` are trained centrally "
            + "(each site alone, all sites pooled) with early stopping on their own validation split.\n\n"
            + federation_for(settings).summary()
        )
        metrics, headline = task.report_metrics, task.headline_metric
        paths = write_report(results, out, title, notes, metrics, headline)
        if matrices:
            with open(paths["markdown"], "a") as f:
                f.write("\n" + cross_site_section(matrices, out))
        rows = comparison_rows(results, metrics, headline)
        print("\n" + markdown_table(rows, metrics))
        print("\n" + "\n".join(verdict_lines(rows)))
        print(f"\nreport: {paths['markdown']}\nplot:   {paths['plot']}\njson:   {paths['json']}")
    return 1 if failures else 0
