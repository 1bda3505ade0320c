"""NVFlare client entry point: runs a MONAI bundle's own training workflow for any task and strategy.

Launched by NVFlare's ``ClientAPIExecutor`` through ``nvflare_jobs/client_entry.py`` (see
``omnifm_monai/jobs/builder.py``); :class:`SiteTrainer` holds the site's side. Each round (NVFlare
Client API):

1. ``flare.receive()`` -> shared global weights (+ the prototypes the server retrieved for this
   site, in ``meta``);
2. load them with ``strict=False`` over the site's private parameters (restored from disk); the
   strategy's ``on_receive`` hook (:mod:`omnifm_monai.strategies`) then sets the prototypes and, with
   ``recalibrate_norms`` (``omnifm``), re-estimates the BatchNorm statistics on the site's own data;
3. evaluate that personalised model (the strategy's ``evaluation_network``: Ditto's personal model) on the
   site's test split, and on its validation split as ``val_<metric>``, with the task's metrics
   (:mod:`omnifm_monai.tasks`: the only task-specific code on the client);
4. train ``local_epochs`` more epochs (the strategy's ``round_epochs``: FedRep adds its head epochs) with
   the bundle's own ``SupervisedTrainer``, built by ``monai.bundle.ConfigWorkflow`` from
   ``configs/train.json`` with this site's overrides (loss: task + lambda * SPAlign, plus the strategy's
   extra terms such as FedProx's), between the strategy's ``before_training`` and ``after_training`` hooks;
5. save the private parameters to disk, ``flare.send()`` only what
   :func:`omnifm_monai.flare.payload.outgoing_payload` allows (with the strategy's ``spectral_summary``).

A site that cannot start (its data missing or unreadable, a class the federation's label map does not name,
a corrupt private state file) logs one line and answers every task with it (``MetaKey.SITE_ERROR``, see
:func:`refuse_tasks`), so the server and the end-of-run summary name the site and its error.

A round whose training fails (an exception) is logged with its traceback on the site, the private
state goes back to the last successful round, and the site sends only a failure flag
(``MetaKey.TRAINING_FAILED``): the server skips it for that round and the site trains again in the next.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch

logger = logging.getLogger("omnifm_monai.flare.client")
MAX_ERROR_CHARS = 600  # a start-up error sent to the server is cut to this length


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classification", help="a name in omnifm_monai.tasks.TASKS")
    parser.add_argument("--bundle-root", required=True, help="the MONAI bundle folder")
    parser.add_argument("--strategy", default="omnifm")
    parser.add_argument("--strategy-options", default="{}", help="JSON overrides of the strategy's fields")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--site-dir", default="", help="private folder of this site (default ./omnifm_site/<site>)")
    parser.add_argument("--dataset-dir", default="", help="the site's own data (.npz, image folder, .json or .csv)")
    parser.add_argument("--num-classes", type=int, default=0, help="label-space size, if the task has one")
    parser.add_argument("--class-names", default="", help="the federation's class names (encode_class_names)")
    parser.add_argument("--scenario", default="", help="simulate this site's share of a named federation")
    parser.add_argument("--num-clients", type=int, default=0)
    parser.add_argument("--federation-data", default="", help="folder of MedMNIST .npz files (empty: phantom)")
    parser.add_argument("--samples-per-client", type=int, default=0, help="0: the partition's default")
    parser.add_argument("--label-map", default="", help="JSON label map of --federation-data (empty: none)")
    parser.add_argument("--site-sizes", default="", help="one samples-per-client per site, e.g. 400,400,60")
    parser.add_argument("--modalities", default="", help="classification: the federation's modalities, e.g. CT,US")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--bundle-overrides", default="{}", help="JSON of bundle config ids -> values")
    return parser.parse_args(argv)


def resolve_bundle_root(path: str) -> str:
    """The bundle folder: as given, or inside the job's custom folder (next to this script, on sys.path)."""
    here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
    for base in ["", here, *sys.path]:
        candidate = os.path.join(base, path)
        if os.path.isfile(os.path.join(candidate, "configs", "train.json")):
            return os.path.abspath(candidate)
    raise FileNotFoundError(f"bundle {path!r} not found (no configs/train.json) from {os.getcwd()} or sys.path.")


def prepare_site_data(args: argparse.Namespace, task, site: str, site_dir: str) -> str:
    """The site's ``dataset_dir``.

    With ``--scenario`` the site's share of the task's simulated federation is built and written
    once to ``<site_dir>/data_<task>.npz`` (a restarted client reuses it); otherwise ``--dataset-dir`` is
    the site's own data.
    """
    if task.uses_num_classes and args.num_classes < 1 and not args.class_names:
        raise ValueError(f"--num-classes (the federation's label-space size) is required for task {task.name!r}.")
    if not args.scenario:
        if not args.dataset_dir:
            raise ValueError("give either --scenario (simulated federation) or --dataset-dir (the site's data).")
        return args.dataset_dir
    dataset_dir = os.path.join(site_dir, f"data_{task.name}.npz")
    if not os.path.isfile(dataset_dir):
        task.federation_from(args).client(site).save_npz(dataset_dir)
    return dataset_dir


class SiteTrainer:
    """One site's side of a federated run: the bundle's trainer, its private state and its payloads.

    Args:
        args: the parsed command line (see :func:`parse_args`).
        site: this site's name.
    """

    def __init__(self, args: argparse.Namespace, site: str) -> None:
        from monai.bundle import ConfigWorkflow

        from omnifm_monai.data.federation_classes import decode_class_names
        from omnifm_monai.flare.site_state import PrivateStateStore
        from omnifm_monai.flare.training_state import restore_training_state
        from omnifm_monai.strategies import get_strategy
        from omnifm_monai.tasks import get_task
        from omnifm_monai.tasks.base import dataset_images

        self.args, self.site = args, site
        self.task = get_task(args.task)
        self.strategy = get_strategy(args.strategy, **json.loads(args.strategy_options))
        site_dir = os.path.abspath(args.site_dir or os.path.join("omnifm_site", site))
        os.makedirs(site_dir, exist_ok=True)
        dataset_dir = prepare_site_data(args, self.task, site, site_dir)
        if not args.scenario and not os.path.exists(dataset_dir):
            raise FileNotFoundError(f"{site}: --dataset-dir '{dataset_dir}' does not exist on this site.")
        class_names = decode_class_names(args.class_names)
        if class_names:  # the federation's label map: refuse data it does not name, before any training
            logger.info(self.task.check_site_classes(dataset_dir, class_names, site))
        overrides = {
            "dataset_dir": dataset_dir,
            **({"num_classes": len(class_names) or args.num_classes} if self.task.uses_num_classes else {}),
            **({"class_names": list(class_names)} if class_names else {}),
            "image_size": args.image_size,
            "seed": args.seed,
            "ckpt_dir": os.path.join(site_dir, "models"),
            "output_dir": os.path.join(site_dir, "eval"),
            "tensorboard_dir": os.path.join(site_dir, "eval", "tensorboard"),  # one folder for the site's whole run
            "strategy": self.strategy.name,  # into the checkpoint's training record (models/metadata.json)
            "val_interval": self.strategy.round_epochs(args.local_epochs),  # the bundle's validation once per round
            "progress_bar": False,  # NVFlare's log files, not a terminal
            **self.strategy.network_options(),
            **json.loads(args.bundle_overrides),
        }
        bundle_root = resolve_bundle_root(args.bundle_root)
        workflow = ConfigWorkflow(
            config_file=os.path.join(bundle_root, "configs", "train.json"),
            workflow_type="train",
            logging_file=False,  # NVFlare owns logging in this process
            bundle_root=bundle_root,
            **overrides,
        )
        workflow.initialize()
        self.trainer = workflow.trainer
        self.network = self.trainer.network
        self.strategy.extend_network(self.network)  # GPFL's modules, before the keys and the restore
        self.dataset_dir = dataset_dir
        self._score_on_test = self.task.test_evaluator(dataset_dir, workflow.parser)  # network -> metrics
        self._score_on_val = self.task.test_evaluator(dataset_dir, workflow.parser, split="val")
        train_items = self.trainer.data_loader.dataset.data  # arrays, or file paths when loaded lazily
        self.train_images = dataset_images(self.trainer.data_loader.dataset)  # (N, C, *S): the centroids' input
        self.centroid_groups = self.task.centroid_groups(train_items)  # (N,) or None: clustered
        self.num_train = len(train_items)
        self.private_keys = self.strategy.private_keys(self.network)
        self.store = PrivateStateStore(os.path.join(site_dir, f"private_{self.strategy.name}.pt"))
        restored = self.store.load_into(self.network)
        logger.info(f"{site}: {self.num_train} training images, private keys restored: {len(restored)}")
        self.strategy.prepare_trainer(self.trainer)  # extra loss terms (FedProx), SCAFFOLD's correction
        self.strategy.attach_site(self.network, self.trainer, site_dir=site_dir)  # Ditto, MOON: per-site state
        # the strategy's private state beyond the network (SCAFFOLD's c_i, FedDyn's h_i), on this site's disk
        self.strategy_state_path = os.path.join(site_dir, f"private_{self.strategy.name}_strategy.pt")
        self._load_strategy_state()
        # the optimizer, the epoch counters and the random streams, as an uninterrupted client keeps them
        self.training_store = PrivateStateStore(os.path.join(site_dir, f"private_{self.strategy.name}_training.pt"))
        if restore_training_state(self.trainer, self.training_store.read()):
            logger.info(f"{site}: training state restored at epoch {self.trainer.state.epoch}")

    def _load_strategy_state(self) -> None:
        if os.path.isfile(self.strategy_state_path):
            state = torch.load(self.strategy_state_path, map_location="cpu", weights_only=True)
            self.strategy.load_site_state(self.trainer, state)

    def _save_strategy_state(self) -> None:
        state = self.strategy.site_state(self.trainer)
        if state:
            tmp = self.strategy_state_path + ".tmp"
            torch.save(state, tmp)
            os.replace(tmp, self.strategy_state_path)  # atomic: a crash leaves the last round's state

    def receive(self, params: dict, meta: dict) -> None:
        """Load the shared weights (``strict=False``: private keys keep the site's values), then the strategy's
        ``on_receive`` (BatchNorm recalibration, the retrieved prototypes)."""
        from monai.networks.utils import copy_model_state

        copy_model_state(src={k: torch.as_tensor(np.asarray(v)) for k, v in params.items()}, dst=self.network)
        self.strategy.on_receive(self.network, self.trainer, meta)

    def evaluation_network(self):
        """The model this site scores and reports: the strategy's ``evaluation_network`` (Ditto's personal one)."""
        return self.strategy.evaluation_network(self.network, self.trainer)

    def score_on_test(self, network) -> dict[str, float]:
        """The task's metrics of ``network`` on this site's test split (another site's model: cross-site)."""
        return self._score_on_test(network)

    def evaluate(self) -> dict[str, float]:
        """The task's metrics of the current (received) model on the site's test split, and the same metrics on
        its validation split as ``val_<metric>`` (what benchmarks choose settings on; the test split chooses
        nothing)."""
        network = self.evaluation_network()
        return self.score_on_test(network) | {f"val_{k}": v for k, v in self._score_on_val(network).items()}

    def train(self) -> float:
        """``local_epochs`` more epochs of the bundle's trainer; saves the private keys. Returns seconds."""
        self.strategy.before_training(self.network, self.trainer)
        start = time.perf_counter()
        self.trainer.state.max_epochs = self.trainer.state.epoch + self.strategy.round_epochs(self.args.local_epochs)
        self.trainer.run()
        self.strategy.after_training(self.network, self.trainer)
        self.store.save(self.network, self.private_keys)
        self._save_strategy_state()
        return time.perf_counter() - start

    def save_training_state(self) -> None:
        """Save what the trainer carries to the next round (:mod:`omnifm_monai.flare.training_state`); called
        once the round's payload is built, so a restarted client resumes the random streams where an
        uninterrupted one would."""
        from omnifm_monai.flare.training_state import training_state

        self.training_store.write(training_state(self.trainer))

    def restore_private_state(self) -> None:
        """Back to the private state of the last successful round (after a failed one)."""
        from omnifm_monai.flare.training_state import restore_training_state

        self.store.load_into(self.network)
        self._load_strategy_state()
        restore_training_state(self.trainer, self.training_store.read())

    def payload(self) -> tuple[dict, dict]:
        """``(params, meta)`` to send: see :func:`omnifm_monai.flare.payload.outgoing_payload`."""
        from omnifm_monai.flare.payload import outgoing_payload

        tokens = self.strategy.spectral_summary(
            self.network, self.train_images, self.centroid_groups, seed=self.args.seed
        )  # (K, d_s) or None
        labels = self.strategy.spectral_labels(self.centroid_groups) if tokens is not None else None  # (K,) or None
        # what the strategy sends beyond weights (SCAFFOLD: its control-variate delta; FedDG: amplitude spectra)
        extra = self.strategy.upload_meta(self.network, self.trainer, self.train_images, seed=self.args.seed)
        return outgoing_payload(
            self.network, self.private_keys, self.num_train, tokens, token_labels=labels, extra_meta=extra
        )


def start_error(site: str, error: BaseException) -> str:
    """One line saying why ``site`` cannot take part: the message of the error's root cause (the data loader's,
    not the config engine's "Failed to evaluate ..." around it), on one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split()) or type(error).__name__
    text = text.removeprefix(f"{site}: ")
    return f"{site} failed at start: {text}"[:MAX_ERROR_CHARS]


def refuse_tasks(site: str, error: BaseException) -> None:
    """Answer every task of the job with the site's start-up error (``MetaKey.SITE_ERROR``) until it ends.

    The server records the error in the round history and ``final_metrics.json`` (``site_errors``), so the
    end-of-run summary names the site and its error in the simulator, in POC and in production alike.
    """
    import nvflare.client as flare

    from omnifm_monai.flare.constants import MetaKey

    reason = start_error(site, error)
    logger.error(reason)
    logger.debug("start-up traceback", exc_info=error)
    while flare.is_running():
        if flare.receive() is None:
            break
        flare.send(flare.FLModel(metrics={}, meta={MetaKey.TRAINING_FAILED: True, MetaKey.SITE_ERROR: reason}))


def main(argv: list[str] | None = None) -> None:
    import nvflare.client as flare
    from nvflare.client.tracking import SummaryWriter

    from omnifm_monai.flare.constants import MetaKey

    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    flare.init()
    try:
        site = SiteTrainer(args, flare.get_site_name())
    except Exception as e:  # bad data or options: tell the server why, instead of vanishing
        refuse_tasks(flare.get_site_name(), e)
        return
    writer = SummaryWriter()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        current_round = int(model.meta.get(MetaKey.ROUND, model.current_round or 0))
        site.receive(model.params or {}, model.meta)
        metrics = site.evaluate()
        for name in [m for m in site.task.report_metrics if m in metrics]:
            writer.add_scalar(f"test_{name}", metrics[name], global_step=current_round)
        if flare.is_evaluate():
            flare.send(flare.FLModel(metrics=metrics))
            continue
        try:
            metrics["train_seconds"] = site.train()
            params, meta = site.payload()
            site.save_training_state()
        except Exception:  # one failed round must not end this site's part in the federation
            logger.exception(f"{site.site} round {current_round}: local training failed; no update sent")
            site.restore_private_state()
            flare.send(flare.FLModel(metrics=metrics, meta={MetaKey.TRAINING_FAILED: True}))
            continue
        metrics["upload_model_bytes"] = meta[MetaKey.UPLOAD_BYTES]["model"]
        metrics["upload_spectral_bytes"] = meta[MetaKey.UPLOAD_BYTES]["spectral"]
        metrics["upload_control_bytes"] = meta[MetaKey.UPLOAD_BYTES]["control"]
        logger.info(f"{site.site} round {current_round}: {metrics}")
        flare.send(flare.FLModel(params=params, metrics=metrics, meta=meta))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    main()
