"""Build, export and simulate an OmniFM-MONAI federated job with NVFlare's Python job API.

Examples::

    # simulate 5 phantom sites (one modality each) for 5 rounds with OmniFM
    python -m nvflare_jobs.omnifm_job --strategy omnifm --clients 5 --rounds 5 --workspace runs/sim

    # the same job as a folder for `nvflare job submit` (POC or a provisioned deployment)
    python -m nvflare_jobs.omnifm_job --strategy fedavg --clients 2 --export runs/jobs

    # real MedMNIST files, one modality per site
    python -m nvflare_jobs.omnifm_job --federation-data ../shared/data/medmnist --clients 10 --image-size 28
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# left out of the shipped bundle: outputs, and logging.conf (NVFlare parses every .conf under custom/)
BUNDLE_OUTPUTS = ("models", "eval", "logs", "__pycache__", "*.pt", "*.ts", "logging.conf")
CLIENT_SCRIPT = "omnifm_client.py"


@dataclass
class JobSettings:
    """Everything that defines one federated run (serialised next to its results)."""

    task: str = "classification"
    strategy: str = "omnifm"
    num_clients: int = 5
    num_rounds: int = 5
    participation: float = 1.0
    local_epochs: int = 1
    scenario: str = "cross_modality_hard"
    federation_data: str = ""  # folder of MedMNIST .npz files; empty: the embedded phantom
    samples_per_client: int = 0  # 0: the partition's default
    image_size: int = 64
    seed: int = 0
    threads: int = 1
    torch_threads: int = 0  # per site; 0: PyTorch's default (simulation sets cores // threads)
    state_root: str = "runs/federated/state"  # server state and each site's private folder
    bundle_overrides: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    server_options: dict[str, Any] = field(default_factory=dict)
    train_timeout: int = 0
    dataset_dir: str = ""  # each site's own data instead of a simulation; "{site}" becomes the site name
    site_names: list[str] = field(default_factory=list)  # provisioned names (with dataset_dir); default site-N
    num_classes: int = 0  # the federation's label-space size, required with dataset_dir if the task has one
    spectral_dp_noise: float = 0.0  # > 0: each site clips and noises its spectral upload (SpectralTokenPrivacy)
    tracking: str = "tensorboard"  # or "mlflow" (needs `pip install mlflow`); tracking_uri below
    tracking_uri: str = ""
    client_script: str = ""  # a site's own entry script wrapping omnifm_monai.flare.client.main (default: ours)

    @property
    def name(self) -> str:
        return f"omnifm_{self.task}_{self.strategy}"

    def server_state_dir(self) -> str:
        return os.path.abspath(os.path.join(self.state_root, "server"))

    def site_dir(self, site: str) -> str:
        return os.path.abspath(os.path.join(self.state_root, site))


def bundle_root(task: str) -> Path:
    """The task's MONAI bundle folder in this repository."""
    from omnifm_monai.tasks import get_task

    return REPO_ROOT / "bundles" / get_task(task).bundle


def federation_for(settings: JobSettings):
    """The simulated federation the sites will hold (the same call every client makes)."""
    from omnifm_monai.tasks import get_task

    return get_task(settings.task).build_federation(
        settings.scenario,
        settings.num_clients,
        seed=settings.seed,
        data_dir=settings.federation_data or None,
        image_size=settings.image_size,
        samples_per_client=settings.samples_per_client or None,
    )


def build_network(settings: JobSettings, num_classes: int):
    """The bundle's own network definition with this job's overrides (the server's initial model).

    ``num_classes`` is ignored for tasks without a label space.
    """
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
    return parser.get_parsed_content("network_def"), strategy


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def client_args(settings: JobSettings, site: str, num_classes: int) -> str:
    """Command-line arguments of ``omnifm_monai/flare/client.py`` for one site."""
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
    if settings.dataset_dir:
        args += ["--dataset-dir", settings.dataset_dir.replace("{site}", site)]
    else:
        args += ["--scenario", settings.scenario, "--num-clients", str(settings.num_clients)]
        if settings.federation_data:
            args += ["--federation-data", os.path.abspath(settings.federation_data)]
        if settings.samples_per_client:
            args += ["--samples-per-client", str(settings.samples_per_client)]
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
    entry = settings.client_script or Path(__file__).with_name("client_entry.py")
    shutil.copy(entry, os.path.join(stage, CLIENT_SCRIPT))
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


def build_job(settings: JobSettings):
    """An NVFlare ``FedJob``: the OmniFM controller on the server, the bundle and client script on each site.

    Returns:
        ``(job, federation)``; ``federation`` is None when the sites use their own data (``dataset_dir``).
    """
    from nvflare.app_common.executors.client_api_executor import ClientAPIExecutor, ExecutionMode
    from nvflare.app_opt.pt.job_config.base_fed_job import BaseFedJob
    from nvflare.client.config import ExchangeFormat, TransferType
    from nvflare.job_config.defs import FilterType

    from omnifm_monai.flare.controller import OmniFMController
    from omnifm_monai.flare.privacy import SpectralTokenPrivacy
    from omnifm_monai.tasks import get_task

    task = get_task(settings.task)
    if settings.site_names and not settings.dataset_dir:
        raise ValueError("site_names are for sites with their own data (dataset_dir); simulations use site-N.")
    if settings.dataset_dir:  # the hospitals' own data: nothing to simulate
        if task.uses_num_classes and settings.num_classes < 1:
            raise ValueError(
                f"num_classes (the federation's label-space size) is required with dataset_dir for task {task.name!r}."
            )
        sites = settings.site_names or [f"site-{i + 1}" for i in range(settings.num_clients)]
        if len(sites) != settings.num_clients or len(set(sites)) != len(sites):
            raise ValueError(f"site_names {sites} must be {settings.num_clients} distinct names (num_clients).")
        federation = None
        num_classes = settings.num_classes
    else:
        federation = federation_for(settings)
        sites, num_classes = [c.name for c in federation.clients], federation.num_classes
    network, strategy = build_network(settings, num_classes)
    job = BaseFedJob(
        initial_model=network,
        name=settings.name,
        min_clients=settings.num_clients,
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
    )
    job.to_server(controller)
    site_files = stage_site_files(settings)
    for site in sites:
        job.to(site_files, site)
        executor = ClientAPIExecutor(
            task_script_path=CLIENT_SCRIPT,
            task_script_args=client_args(settings, site, num_classes),
            execution_mode=ExecutionMode.IN_PROCESS,
            params_exchange_format=ExchangeFormat.PYTORCH,
            server_expected_format=ExchangeFormat.NUMPY,
            params_transfer_type=TransferType.FULL,
        )
        job.to(executor, site, tasks=["*"])
        if settings.spectral_dp_noise > 0 and strategy.uses_knowledge_base:
            dp = SpectralTokenPrivacy(noise_multiplier=settings.spectral_dp_noise)
            job.to(dp, site, filter_type=FilterType.TASK_RESULT, tasks=["train"])
    return job, federation


def run_simulation(settings: JobSettings, workspace: str) -> None:
    """Run the job in the NVFlare simulator; results land in ``settings.state_root``."""
    if not settings.torch_threads:  # the simulated sites share this machine's cores
        settings.torch_threads = max(1, (os.cpu_count() or 1) // max(1, settings.threads))
    job, federation = build_job(settings)
    if federation is not None:
        print(federation.summary(), flush=True)
    os.makedirs(settings.state_root, exist_ok=True)
    with open(os.path.join(settings.state_root, "settings.json"), "w") as f:
        json.dump(asdict(settings), f, indent=1)
    job.simulator_run(os.path.abspath(workspace), threads=settings.threads)


def parse_args(argv: list[str] | None = None) -> tuple[JobSettings, argparse.Namespace]:
    from omnifm_monai.tasks import TASKS

    defaults = JobSettings()
    parser = argparse.ArgumentParser(description="Simulate or export an OmniFM-MONAI NVFlare job.")
    parser.add_argument("--task", default=defaults.task, choices=sorted(TASKS))
    parser.add_argument("--strategy", default=defaults.strategy)
    parser.add_argument("--clients", type=int, default=None, help=f"default {defaults.num_clients}, or len(--sites)")
    parser.add_argument("--rounds", type=int, default=defaults.num_rounds)
    parser.add_argument("--participation", type=float, default=defaults.participation)
    parser.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    parser.add_argument("--scenario", default=defaults.scenario)
    parser.add_argument("--federation-data", default="", help="folder of MedMNIST .npz files (default: phantom)")
    parser.add_argument("--samples-per-client", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--state-root", default="", help="default: runs/<job name>/state")
    parser.add_argument("--bundle-overrides", default="{}", help="JSON: bundle config id -> value")
    parser.add_argument("--strategy-options", default="{}", help='JSON, e.g. {"proximal_mu": 0.1}')
    parser.add_argument("--server-options", default="{}", help='JSON of ServerCore options, e.g. {"retrieval_k": 4}')
    parser.add_argument("--dataset-dir", default="", help="each site's own data (.npz/folder); {site} = site name")
    parser.add_argument("--num-classes", type=int, default=0, help="label-space size, with --dataset-dir")
    parser.add_argument("--sites", default="", help="provisioned site names, comma-separated (with --dataset-dir)")
    parser.add_argument("--spectral-dp-noise", type=float, default=0.0, help="noise multiplier; 0: no DP filter")
    parser.add_argument("--tracking", default="tensorboard", choices=["tensorboard", "mlflow"])
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking server (default: a local store)")
    parser.add_argument("--train-timeout", type=int, default=0, help="seconds a site may take per round (0: none)")
    parser.add_argument("--client-script", default="", help="entry script run at each site (default: ours)")
    parser.add_argument("--workspace", default="", help="simulator workspace (default: runs/<job name>/workspace)")
    parser.add_argument("--export", default="", help="export the job folder here instead of simulating")
    args = parser.parse_args(argv)
    site_names = [name for name in args.sites.split(",") if name]
    settings = JobSettings(
        task=args.task,
        strategy=args.strategy,
        num_clients=args.clients or len(site_names) or defaults.num_clients,
        num_rounds=args.rounds,
        participation=args.participation,
        local_epochs=args.local_epochs,
        scenario=args.scenario,
        federation_data=args.federation_data,
        samples_per_client=args.samples_per_client,
        image_size=args.image_size,
        seed=args.seed,
        threads=args.threads,
        bundle_overrides=json.loads(args.bundle_overrides),
        strategy_options=json.loads(args.strategy_options),
        server_options=json.loads(args.server_options),
        dataset_dir=args.dataset_dir,
        num_classes=args.num_classes,
        spectral_dp_noise=args.spectral_dp_noise,
        tracking=args.tracking,
        tracking_uri=args.tracking_uri,
        client_script=args.client_script,
        train_timeout=args.train_timeout,
        site_names=site_names,
    )
    settings.state_root = args.state_root or os.path.join("runs", settings.name, "state")
    return settings, args


def main(argv: list[str] | None = None) -> None:
    settings, args = parse_args(argv)
    if args.export:
        job, _ = build_job(settings)
        job.export_job(args.export)
        print(f"exported {os.path.join(args.export, settings.name)}")
        return
    run_simulation(settings, args.workspace or os.path.join("runs", settings.name, "workspace"))


if __name__ == "__main__":
    main()
