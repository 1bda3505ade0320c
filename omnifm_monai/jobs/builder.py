"""Build, export and simulate one OmniFM-MONAI federated job with NVFlare's Python job API (``FedJob``).

The server runs :class:`~omnifm_monai.flare.controller.OmniFMController`; each site runs the task's
bundle through NVFlare's Client API (``nvflare_jobs/client_entry.py``, copied into its ``custom/``
folder). ``python -m nvflare_jobs.omnifm_job`` is the command line over :func:`build_job`,
:func:`export_job` and :func:`run_simulation`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnifm_monai.data.federation_classes import encode_class_names
from omnifm_monai.flare.process_tree import sigterm_raises_exit, stop_process_tree
from omnifm_monai.jobs.run_summary import RunSummary, summarize_run
from omnifm_monai.jobs.settings import JobSettings

__all__ = [
    "BUNDLE_OUTPUTS",
    "CLIENT_ENTRY",
    "CLIENT_SCRIPT",
    "INITIAL_MODEL_FILE",
    "REPO_ROOT",
    "analytics_receiver",
    "build_job",
    "build_network",
    "bundle_network",
    "bundle_root",
    "client_args",
    "compact_json",
    "export_job",
    "federation_for",
    "job_min_clients",
    "job_site_names",
    "run_simulation",
    "site_label_space",
    "stage_server_files",
    "stage_site_files",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
# left out of the shipped bundle: outputs, and logging.conf (NVFlare parses every .conf under custom/)
BUNDLE_OUTPUTS = ("models", "eval", "logs", "__pycache__", "*.pt", "*.ts", "logging.conf")
CLIENT_SCRIPT = "omnifm_client.py"  # the entry script's name inside each site's custom/ folder
NVFLARE_MAX_CLIENTS = 100  # the simulator's default --max_clients
INITIAL_MODEL_FILE = "omnifm_initial_model.pt"  # the seeded initial global weights in the server's custom/ folder
CLIENT_ENTRY = REPO_ROOT / "nvflare_jobs" / "client_entry.py"  # what is copied there by default
DP_LEDGER_FILE = "dp_ledger.json"  # a site's spectral DP releases so far, in its site folder (survives restarts)


def bundle_root(task: str) -> Path:
    """The task's MONAI bundle folder in this repository."""
    from omnifm_monai.tasks import get_task

    return REPO_ROOT / "bundles" / get_task(task).bundle


def federation_for(settings: JobSettings):
    """The simulated federation the sites will hold (the same call every client makes)."""
    from omnifm_monai.tasks import get_task

    return get_task(settings.task).federation_from(settings)


def bundle_network(settings: JobSettings, num_classes: int):
    """The bundle's own network definition with this job's overrides, before a strategy extends it.

    Its weights are drawn from ``settings.seed`` (the global torch RNG is left as it was), so the same
    settings give the same network: the job's initial global model (:func:`build_job` ships its weights
    to the server as ``custom/omnifm_initial_model.pt``) and the plain-loop benchmark's initial model.
    ``num_classes`` is ignored for tasks without a label space.

    Returns:
        ``(network, strategy)``.
    """
    import torch
    from monai.bundle import ConfigParser

    from omnifm_monai.strategies import get_strategy
    from omnifm_monai.tasks import get_task

    parser = ConfigParser()
    parser.read_config(str(bundle_root(settings.task) / "configs" / "train.json"))
    strategy = get_strategy(settings.strategy, **settings.strategy_options)
    overrides = {"image_size": settings.image_size, **strategy.network_options()}
    if get_task(settings.task).uses_num_classes:
        overrides["num_classes"] = num_classes
    overrides.update(settings.bundle_overrides)
    for key, value in overrides.items():
        parser[key] = value
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        network = parser.get_parsed_content("network_def")
    return network, strategy


def build_network(settings: JobSettings, num_classes: int):
    """:func:`bundle_network` with the strategy's own shared modules (GPFL's), as at every site."""
    network, strategy = bundle_network(settings, num_classes)
    strategy.extend_network(network)
    return network, strategy


def compact_json(value: Any) -> str:
    """JSON without spaces (NVFlare splits a site's script arguments on white space)."""
    return json.dumps(value, separators=(",", ":"))


def client_args(settings: JobSettings, site: str, num_classes: int, class_names: Sequence[str] = ()) -> str:
    """Command-line arguments of ``omnifm_monai/flare/client.py`` for one site (``class_names``: the federation's)."""
    args = [
        "--task", settings.task,
        "--bundle-root", bundle_root(settings.task).name,
        "--strategy", settings.strategy,
        "--strategy-options", compact_json(settings.strategy_options),
        "--local-epochs", str(settings.local_epochs),
        "--site-dir", settings.site_dir(site),
        "--image-size", str(settings.image_size),
        "--seed", str(settings.seed),
        "--torch-threads", str(settings.torch_threads),
        "--bundle-overrides", compact_json(settings.bundle_overrides),
        "--num-classes", str(num_classes),
    ]  # fmt: skip
    if class_names:
        args += ["--class-names", encode_class_names(class_names)]
    if settings.dataset_dir:
        args += ["--dataset-dir", settings.dataset_dir.replace("{site}", site)]
    else:
        args += ["--scenario", settings.scenario, "--num-clients", str(settings.num_clients)]
        if settings.federation_data:
            folders = settings.federation_data.split(os.pathsep)
            args += ["--federation-data", os.pathsep.join(os.path.abspath(f) for f in folders if f)]
        if settings.samples_per_client:
            args += ["--samples-per-client", str(settings.samples_per_client)]
        if settings.label_map:
            args += ["--label-map", os.path.abspath(settings.label_map)]
        if settings.site_sizes:
            args += ["--site-sizes", settings.site_sizes.replace(" ", "")]
        if settings.modalities:
            args += ["--modalities", ",".join(settings.modalities)]
    # NVFlare splits script_args on white space, without shell quoting
    spaced = [a for a in args if any(c.isspace() for c in a)]
    if spaced:
        raise ValueError(f"client arguments cannot contain white space: {spaced}")
    return " ".join(args)


def stage_site_files(settings: JobSettings) -> str:
    """A folder with what each site's ``custom/`` folder receives: the client entry script and a clean
    copy of the bundle (configs and docs, no checkpoints), so paths inside the job are relative."""
    source = bundle_root(settings.task)
    stage = os.path.abspath(os.path.join(settings.state_root, "job_files"))
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(source, os.path.join(stage, source.name), ignore=shutil.ignore_patterns(*BUNDLE_OUTPUTS))
    entry = settings.client_script or CLIENT_ENTRY
    shutil.copy(entry, os.path.join(stage, CLIENT_SCRIPT))
    return stage


def stage_server_files(settings: JobSettings, initial_weights: dict) -> str:
    """A folder with what the server's ``custom/`` folder receives: the initial global weights
    (``INITIAL_MODEL_FILE``, read by the job's ``PTFileModelPersistor``)."""
    import torch

    stage = os.path.abspath(os.path.join(settings.state_root, "server_files"))
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    torch.save({k: v.detach().cpu() for k, v in initial_weights.items()}, os.path.join(stage, INITIAL_MODEL_FILE))
    return stage


def analytics_receiver(settings: JobSettings):
    """NVFlare experiment tracking on the server: the sites' metrics as TensorBoard events or in MLflow."""
    events = ["fed.analytix_log_stats"]
    if settings.tracking == "tensorboard":
        from nvflare.app_opt.tracking.tb.tb_receiver import TBAnalyticsReceiver

        return TBAnalyticsReceiver(events=events)
    if settings.tracking == "mlflow":
        from nvflare.app_opt.tracking.mlflow.mlflow_receiver import MLflowReceiver

        return MLflowReceiver(tracking_uri=settings.tracking_uri or None, events=events)
    raise ValueError(f"tracking must be 'tensorboard' or 'mlflow', got {settings.tracking!r}.")


def site_label_space(settings: JobSettings, sites: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """``(class_names, num_classes)`` of a federation of the sites' own data (``settings.dataset_dir``).

    The class names are ``settings.class_names``; else, for a task with named classes, they come from the
    sites' data readable where the job is built (a simulation, POC on one machine: the union of the sites'
    classification classes, the longest segmentation label list); a site whose data is missing or bad
    here is left to fail at its own start. ``num_classes`` is ``settings.num_classes`` or their count.

    Raises:
        ValueError: when the task needs a label space and none is given nor readable, or the two disagree.
    """
    from omnifm_monai.tasks import get_task

    task = get_task(settings.task)
    class_names = tuple(settings.class_names)
    if not class_names and task.uses_num_classes and settings.num_classes < 1:
        per_site = []
        for site in sites:
            try:
                names = task.data_class_names(settings.dataset_dir.replace("{site}", site))
            except Exception:  # not on this machine, or bad: that site's own start says why
                continue
            if names:
                per_site.append(tuple(names))
        class_names = task.federation_class_names(per_site) if per_site else ()
    num_classes = settings.num_classes or len(class_names)
    if class_names and num_classes != len(class_names):
        raise ValueError(f"num_classes={num_classes} but {len(class_names)} class names {list(class_names)}.")
    if task.uses_num_classes and num_classes < 1:
        raise ValueError(
            f"the federation's label space is unknown for task {task.name!r} with dataset_dir: give class_names "
            "(--class-names a,b,c) or num_classes, or make a site's data readable where the job is built."
        )
    return class_names, num_classes


def job_min_clients(settings: JobSettings) -> int:
    """The job meta's ``min_clients``: ``settings.min_clients`` (0: every site), checked against the sites.

    NVFlare 2.9 aborts a running job once fewer than this many sites are alive (a site is deemed
    dead ``dead_client_grace_period`` seconds after its job process disappears) and starts it
    only when this many are connected.
    """
    if not 0 <= settings.min_clients <= settings.num_clients:
        raise ValueError(
            f"min_clients must be in [0, num_clients={settings.num_clients}] (0: every site), "
            f"got {settings.min_clients}."
        )
    return settings.min_clients or settings.num_clients


def build_job(settings: JobSettings):
    """An NVFlare ``FedJob``: the OmniFM controller on the server, the bundle and client script on each site.

    Returns:
        ``(job, federation)``; ``federation`` is None when the sites use their own data (``dataset_dir``).
    """
    from nvflare.app_common.executors.client_api_executor import ClientAPIExecutor, ExecutionMode
    from nvflare.app_opt.pt import PTFileModelPersistor
    from nvflare.app_opt.pt.job_config.base_fed_job import BaseFedJob
    from nvflare.client.config import ExchangeFormat, TransferType
    from nvflare.job_config.defs import FilterType

    from omnifm_monai.flare.controller import OmniFMController
    from omnifm_monai.flare.privacy import SpectralTokenPrivacy
    from omnifm_monai.strategies import get_strategy
    from omnifm_monai.tasks import get_task

    task = get_task(settings.task)
    if (
        settings.spectral_dp_noise > 0
        and not get_strategy(settings.strategy, **settings.strategy_options).uses_knowledge_base
    ):
        raise ValueError(
            f"spectral_dp_noise={settings.spectral_dp_noise:g} protects spectral tokens, but {settings.strategy!r} "
            "sends none; give it the spectral path (--strategy-options '{\"spectral\":true}') or omnifm_paper."
        )
    if settings.site_names and not settings.dataset_dir:
        raise ValueError("site_names are for sites with their own data (dataset_dir); simulations use site-N.")
    if settings.dataset_dir:  # the hospitals' own data: nothing to simulate
        sites = job_site_names(settings)
        if len(sites) != settings.num_clients or len(set(sites)) != len(sites):
            raise ValueError(f"site_names {sites} must be {settings.num_clients} distinct names (num_clients).")
        federation = None
        class_names, num_classes = site_label_space(settings, sites)
    else:
        federation = federation_for(settings)
        sites, num_classes = [c.name for c in federation.clients], federation.num_classes
        fixed = task.federation_bundle_overrides(federation)  # e.g. VQA's vocab_size, for the server and the sites
        settings = dataclasses.replace(settings, bundle_overrides={**fixed, **settings.bundle_overrides})
        class_names = tuple(getattr(federation, "class_names", ()))  # the simulation's own label map
    network, strategy = build_network(settings, num_classes)
    initial, _ = bundle_network(settings, num_classes)  # what the server's persistor holds (no GPFL modules)
    job = BaseFedJob(
        initial_model=initial,
        # the seeded weights, not a network the server process would draw from its own RNG state
        model_persistor=PTFileModelPersistor(model=initial, source_ckpt_file_full_name=INITIAL_MODEL_FILE),
        name=settings.name,
        min_clients=job_min_clients(settings),
        key_metric=task.headline_metric,
        analytics_receiver=analytics_receiver(settings),
    )
    controller = OmniFMController(
        strategy=settings.strategy,
        num_rounds=settings.num_rounds,
        participation=settings.participation,
        seed=settings.seed,
        private_keys=sorted(strategy.private_keys(network)),
        state_dir=settings.server_state_dir(),
        strategy_options=settings.strategy_options or None,
        train_timeout=settings.train_timeout,
        server_options=settings.server_options or None,
        late_sites=settings.late_sites or None,
    )
    job.to_server(controller)
    job.to(stage_server_files(settings, initial.state_dict()), "server")
    site_files = stage_site_files(settings)
    for site in sites:
        job.to(site_files, site)
        script_args = client_args(settings, site, num_classes, class_names)
        if settings.execution_mode == ExecutionMode.EXTERNAL_PROCESS:
            # a trainer process per round (launch_once=False): one that dies fails its task only, and the
            # next round starts a new one, which resumes from the site's saved private and training state
            where = {"command": f"python3 -u custom/{CLIENT_SCRIPT} {script_args}", "launch_once": False}
        else:
            where = {"task_script_path": CLIENT_SCRIPT, "task_script_args": script_args}
        executor = ClientAPIExecutor(
            execution_mode=settings.execution_mode,
            params_exchange_format=ExchangeFormat.PYTORCH,
            server_expected_format=ExchangeFormat.NUMPY,
            params_transfer_type=TransferType.FULL,
            **where,
        )
        job.to(executor, site, tasks=["*"])
        if settings.spectral_dp_noise > 0:
            dp = SpectralTokenPrivacy(
                noise_multiplier=settings.spectral_dp_noise,
                budget=settings.spectral_dp_budget,
                ledger=os.path.join(settings.site_dir(site), DP_LEDGER_FILE),
            )
            job.to(dp, site, filter_type=FilterType.TASK_RESULT, tasks=["train"])
    return job, federation


def job_site_names(settings: JobSettings) -> list[str]:
    """The job's site names: ``site_names``, else ``site-1`` .. ``site-N`` (as every simulation names them)."""
    return list(settings.site_names) or [f"site-{i + 1}" for i in range(settings.num_clients)]


def run_simulation(settings: JobSettings, workspace: str) -> RunSummary:
    """Run the job in the NVFlare simulator; results land in ``settings.state_root``.

    Returns:
        the end-of-run summary (printed too): which sites finished, and each other site's error.
    """
    from omnifm_monai.tasks import get_task

    if not settings.torch_threads:  # the simulated sites share this machine's cores
        settings.torch_threads = max(1, (os.cpu_count() or 1) // max(1, settings.threads))
    job, federation = build_job(settings)
    if federation is not None:
        print(federation.summary(), flush=True)
    settings.save()
    _simulate(job, job_site_names(settings), os.path.abspath(workspace), settings.threads)
    headline = get_task(settings.task).headline_metric
    summary = summarize_run(settings.server_state_dir(), job_site_names(settings), headline, os.path.abspath(workspace))
    print(summary.text(), flush=True)
    return summary


def _simulate(job, sites: Sequence[str], workspace: str, threads: int) -> int:
    """What ``FedJob.simulator_run`` does, through :mod:`omnifm_monai.flare.simulator` (NVFlare's simulator with
    its shared client-name race fixed); returns the simulator's exit code."""
    with tempfile.TemporaryDirectory() as job_root:
        job.export_job(job_root)
        command = [sys.executable, "-m", "omnifm_monai.flare.simulator", os.path.join(job_root, job.name)]
        command += ["-w", workspace, "-c", ",".join(sites), "-n", str(len(sites)), "-t", str(threads)]
        command += ["-m", str(max(NVFLARE_MAX_CLIENTS, len(sites)))]  # NVFlare refuses more than 100 by default
        with sigterm_raises_exit():
            process = subprocess.Popen(command, start_new_session=True)  # as NVFlare starts it
            try:
                return process.wait()
            except BaseException:  # interrupted or terminated: stop the simulator and every worker, by their pids
                stop_process_tree(process)
                raise


def export_job(settings: JobSettings, export_dir: str, *, save_settings: bool = False) -> str:
    """Export the job as a folder for ``nvflare job submit`` or the FLARE API; returns the folder.

    Args:
        settings: the run.
        export_dir: where the job folder (named ``settings.name``) is written.
        save_settings: also write ``<state_root>/settings.json``, as a simulation does.
    """
    job, _ = build_job(settings)
    job.export_job(export_dir)
    if save_settings:
        settings.save()
    return os.path.join(export_dir, settings.name)
