"""JobSettings: everything that defines one federated run, and the job options that fill it."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from omnifm_monai.data.federation_classes import parse_class_names
from omnifm_monai.flare.sampling import parse_late_sites

__all__ = ["EXECUTION_MODES", "JobSettings", "job_argument_parser", "parse_job_args"]

EXECUTION_MODES = ("in_process", "external_process")
"""Where a site's training runs (``JobSettings.execution_mode``): NVFlare's ``ClientAPIExecutor`` modes."""


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
    label_map: str = ""  # JSON {file stem: {source label: shared class}} (federation_data, or "phantom"); empty: none
    site_sizes: str = ""  # "400,400,60,...": one samples_per_client per site; empty: all samples_per_client
    late_sites: dict[str, int] = field(default_factory=dict)  # site -> first round it is sampled in (joins late)
    modalities: list[str] = field(default_factory=list)  # classification: only these modalities/files; empty: all
    image_size: int = 64
    seed: int = 0
    threads: int = 1
    torch_threads: int = 0  # per site; 0: PyTorch's default (simulation sets cores // threads)
    state_root: str = "runs/federated/state"  # server state and each site's private folder
    bundle_overrides: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    server_options: dict[str, Any] = field(default_factory=dict)
    train_timeout: int = 0
    # NVFlare's job meta min_clients: sites that must be connected for the job to start and alive for it to
    # go on (a site whose process dies is skipped while this many live; docs/running.md). 0: every site.
    min_clients: int = 1
    # where a site's training runs: "in_process" (inside NVFlare's job process, the simulator's default) or
    # "external_process" (a trainer process per round, started by that job process: a trainer killed or out
    # of memory costs the site one round, not the job; docs/running.md, "Failure modes")
    execution_mode: str = "in_process"
    dataset_dir: str = ""  # each site's own data instead of a simulation; "{site}" becomes the site name
    site_names: list[str] = field(default_factory=list)  # provisioned names (with dataset_dir); default site-N
    num_classes: int = 0  # the federation's label-space size with dataset_dir (0: len(class_names) or the data's)
    # the federation's class names (one label map for every site); empty: a simulation's own, or the union
    # of the sites' classes readable where the job is built (dataset_dir); omnifm_monai.data.federation_classes
    class_names: list[str] = field(default_factory=list)
    spectral_dp_noise: float = 0.0  # > 0: each site clips and noises its spectral upload (SpectralTokenPrivacy)
    spectral_dp_budget: float = 0.0  # > 0: a site stops uploading tokens once this epsilon is spent (0: no budget)
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

    def save(self) -> str:
        """Write these settings to ``<state_root>/settings.json``; returns the file's path."""
        os.makedirs(self.state_root, exist_ok=True)
        path = os.path.join(self.state_root, "settings.json")
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=1)
        return path


def job_argument_parser() -> argparse.ArgumentParser:
    """The options of ``python -m nvflare_jobs.omnifm_job`` (also forwarded by the main job, POC and benchmarks)."""
    from omnifm_monai.tasks import TASKS

    defaults = JobSettings()
    parser = argparse.ArgumentParser(description="Simulate or export an OmniFM-MONAI NVFlare job.")
    parser.add_argument("--task", default=defaults.task, choices=sorted(TASKS))
    parser.add_argument("--strategy", default=defaults.strategy)
    parser.add_argument("--clients", type=int, default=None, help=f"default {defaults.num_clients}, or len(--sites)")
    parser.add_argument("--rounds", type=int, default=defaults.num_rounds)
    parser.add_argument("--participation", type=float, default=defaults.participation)
    parser.add_argument("--late-sites", default="", help="sites joining a running job: site-4:3,site-5:4 (site:round)")
    parser.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    parser.add_argument("--scenario", default=defaults.scenario)
    parser.add_argument(
        "--federation-data",
        default="",
        help="real sources, one per site (MedMNIST .npz folder, MSD folders, image folders, volumes + pairs.json), "
        "joined by : (default: phantom)",
    )
    parser.add_argument("--samples-per-client", type=int, default=0)
    parser.add_argument(
        "--label-map", default="", help="JSON label map onto one label space (--federation-data's files or 'phantom')"
    )
    parser.add_argument("--site-sizes", default="", help="one samples-per-client per site, e.g. 400,400,60,60")
    parser.add_argument(
        "--modalities", default="", help="classification: only these modalities (phantom) or files, e.g. CT,MR-T1"
    )
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--state-root", default="", help="default: runs/<job name>/state")
    parser.add_argument("--bundle-overrides", default="{}", help="JSON: bundle config id -> value")
    parser.add_argument("--strategy-options", default="{}", help='JSON, e.g. {"proximal_mu": 0.1}')
    parser.add_argument("--server-options", default="{}", help='JSON of ServerCore options, e.g. {"retrieval_k": 4}')
    parser.add_argument("--dataset-dir", default="", help="each site's own data (.npz/folder); {site} = site name")
    parser.add_argument("--num-classes", type=int, default=0, help="label-space size, with --dataset-dir")
    parser.add_argument(
        "--class-names", default="", help="the federation's classes: a,b,c or a file (JSON list or one per line)"
    )
    parser.add_argument("--sites", default="", help="provisioned site names, comma-separated (with --dataset-dir)")
    parser.add_argument("--spectral-dp-noise", type=float, default=0.0, help="noise multiplier; 0: no DP filter")
    parser.add_argument(
        "--spectral-dp-budget", type=float, default=0.0, help="epsilon a site may spend on tokens (0: no budget)"
    )
    parser.add_argument("--tracking", default="tensorboard", choices=["tensorboard", "mlflow"])
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking server (default: a local store)")
    parser.add_argument("--train-timeout", type=int, default=0, help="seconds a site may take per round (0: none)")
    parser.add_argument(
        "--min-clients", type=int, default=1, help="live sites the job needs to start and to go on (0: every site)"
    )
    parser.add_argument(
        "--execution-mode",
        default=defaults.execution_mode,
        choices=EXECUTION_MODES,
        help="in_process: train inside NVFlare's job process; external_process: a trainer process per round "
        "(a dead trainer costs its site one round, not the job)",
    )
    parser.add_argument("--client-script", default="", help="entry script run at each site (default: ours)")
    parser.add_argument("--workspace", default="", help="simulator workspace (default: runs/<job name>/workspace)")
    parser.add_argument("--export", default="", help="export the job folder here instead of simulating")
    return parser


def parse_job_args(argv: list[str] | None = None) -> tuple[JobSettings, argparse.Namespace]:
    """Job options -> ``(settings, namespace)``; the namespace keeps ``workspace`` and ``export``."""
    defaults = JobSettings()
    args = job_argument_parser().parse_args(argv)
    site_names = [name for name in args.sites.split(",") if name]
    settings = JobSettings(
        task=args.task,
        strategy=args.strategy,
        num_clients=args.clients or len(site_names) or defaults.num_clients,
        num_rounds=args.rounds,
        participation=args.participation,
        late_sites=parse_late_sites(args.late_sites),
        local_epochs=args.local_epochs,
        scenario=args.scenario,
        federation_data=args.federation_data,
        samples_per_client=args.samples_per_client,
        label_map=args.label_map,
        site_sizes=args.site_sizes,
        modalities=[m for m in args.modalities.split(",") if m],
        image_size=args.image_size,
        seed=args.seed,
        threads=args.threads,
        bundle_overrides=json.loads(args.bundle_overrides),
        strategy_options=json.loads(args.strategy_options),
        server_options=json.loads(args.server_options),
        dataset_dir=args.dataset_dir,
        num_classes=args.num_classes,
        class_names=list(parse_class_names(args.class_names)) if args.class_names else [],
        spectral_dp_noise=args.spectral_dp_noise,
        spectral_dp_budget=args.spectral_dp_budget,
        tracking=args.tracking,
        tracking_uri=args.tracking_uri,
        client_script=args.client_script,
        train_timeout=args.train_timeout,
        min_clients=args.min_clients,
        execution_mode=args.execution_mode,
        site_names=site_names,
    )
    settings.state_root = args.state_root or os.path.join("runs", settings.name, "state")
    return settings, args
