"""The references beside every federated comparison: each site alone and all sites pooled, trained centrally.

A hospital's question is whether joining beats the best it can do alone, so two of the references are
trained *to convergence* rather than for the federation's budget: the task's bundle (plain backbone,
``spectral=False, prompt=False``) for at most ``max_epochs`` epochs, validated after every epoch on the
training data's own validation split (a site's own, or every site's pooled), stopped after ``patience``
epochs without a better validation score (MONAI's :class:`~monai.handlers.EarlyStopHandler`), and scored
with the weights of its best validation epoch on each site's own test split (and, as ``val_<metric>``, on its
validation split: for a site alone that is the best epoch's own score). Both references take the
same epoch cap. The test split never chooses anything. :func:`train_bundle` with ``patience=0`` trains for
a fixed number of epochs (the benchmark's same-budget pooled row).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from omnifm_monai.jobs.builder import bundle_root, federation_for
from omnifm_monai.jobs.settings import JobSettings

__all__ = [
    "LOCAL_CONVERGED",
    "POOLED_CONVERGED",
    "REFERENCE_LABELS",
    "train_bundle",
    "local_to_convergence",
    "pooled_to_convergence",
]

LOCAL_CONVERGED = "local (to convergence)"
"""Report label: each site alone, its own data, early stopping on its own validation split."""

POOLED_CONVERGED = "pooled (to convergence)"
"""Report label: every site's training data pooled, early stopping on the pooled validation split."""

REFERENCE_LABELS = (LOCAL_CONVERGED, POOLED_CONVERGED)


def train_bundle(
    dataset_path: str,
    settings: JobSettings,
    out_dir: str,
    *,
    num_classes: int,
    max_epochs: int,
    patience: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Train the task's bundle centrally on one ``.npz``; returns ``(workflow, record)``.

    Args:
        dataset_path: the data set (a site's share or the pooled data) in the bundle's layout.
        settings: the job's settings (task, image size, seed, bundle overrides).
        out_dir: checkpoints and events go here.
        num_classes: the federation's label-space size.
        max_epochs: the epoch cap, >= 1.
        patience: > 0: validate every epoch, stop after this many epochs without a better validation score
            and restore the best epoch's weights; 0: train ``max_epochs`` epochs with the bundle's own
            validation interval.

    Returns:
        The initialised, finished ``ConfigWorkflow`` (its ``trainer.network`` holds the chosen weights) and
        ``{"epochs": epochs run, "best_epoch": ..., "best_val": ...}`` (best ones ``None`` when patience is 0).

    Raises:
        ValueError: for ``max_epochs < 1`` or ``patience < 0``.
    """
    from monai.bundle import ConfigWorkflow
    from monai.handlers import EarlyStopHandler
    from monai.utils import optional_import

    events, _ = optional_import("ignite.engine", name="Events")
    if max_epochs < 1:
        raise ValueError(f"max_epochs={max_epochs} must be >= 1.")
    if patience < 0:
        raise ValueError(f"patience={patience} must be >= 0.")
    bundle = str(bundle_root(settings.task))
    overrides = {**settings.bundle_overrides, **({"val_interval": 1} if patience else {})}
    workflow = ConfigWorkflow(
        config_file=os.path.join(bundle, "configs", "train.json"),
        workflow_type="train",
        logging_file=False,
        bundle_root=bundle,
        dataset_dir=dataset_path,
        num_classes=num_classes,
        image_size=settings.image_size,
        seed=settings.seed,
        epochs=max_epochs,
        ckpt_dir=os.path.join(out_dir, "models"),
        output_dir=os.path.join(out_dir, "eval"),
        progress_bar=False,
        spectral=False,
        prompt=False,
        **overrides,
    )
    workflow.initialize()
    network, best = workflow.trainer.network, {"epoch": None, "score": float("-inf"), "state": None}
    if patience:
        evaluator = workflow.evaluator

        def score(engine) -> float:
            return float(engine.state.metrics[engine.state.key_metric_name])

        def keep_best(engine) -> None:
            if score(engine) > best["score"]:  # ties keep the earlier epoch, as early stopping counts them
                best.update(epoch=workflow.trainer.state.epoch, score=score(engine))
                best["state"] = copy.deepcopy(network.state_dict())

        evaluator.add_event_handler(events.EPOCH_COMPLETED, keep_best)
        EarlyStopHandler(patience=patience, score_function=score, trainer=workflow.trainer).attach(evaluator)
    workflow.run()
    if best["state"] is not None:
        network.load_state_dict(best["state"])
    record = {"epochs": int(workflow.trainer.state.epoch), "best_epoch": best["epoch"]}
    record["best_val"] = best["score"] if best["epoch"] is not None else None
    return workflow, record


def _score_sites(settings: JobSettings, clients, out_dir: str, trained: dict[str, Any]) -> dict[str, dict]:
    """``{site: metrics}``: the network of ``trained[site]`` on the site's own test split, and on its validation
    split as ``val_<metric>``, as a federated site reports its received model (what settings are chosen on)."""
    from omnifm_monai.tasks import get_task

    task, metrics = get_task(settings.task), {}
    for client in clients:
        path = os.path.join(out_dir, f"{client.name}.npz")
        if not os.path.isfile(path):
            client.save_npz(path)
        workflow = trained[client.name]
        network = workflow.trainer.network
        on_val = task.test_evaluator(path, workflow.parser, split="val")(network)
        metrics[client.name] = task.test_evaluator(path, workflow.parser)(network) | {
            f"val_{k}": v for k, v in on_val.items()
        }
    return metrics


def local_to_convergence(
    settings: JobSettings, out_dir: str, *, max_epochs: int, patience: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Each site alone on its own data, to convergence; returns ``({site: test metrics}, {site: record})``."""
    federation = federation_for(settings)
    os.makedirs(out_dir, exist_ok=True)
    metrics, records = {}, {}
    for client in federation.clients:
        path = os.path.join(out_dir, f"{client.name}.npz")
        client.save_npz(path)
        workflow, records[client.name] = train_bundle(
            path,
            settings,
            os.path.join(out_dir, client.name),
            num_classes=federation.num_classes,
            max_epochs=max_epochs,
            patience=patience,
        )
        metrics |= _score_sites(settings, [client], out_dir, {client.name: workflow})
    return metrics, records


def pooled_to_convergence(
    settings: JobSettings, out_dir: str, *, max_epochs: int, patience: int
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Every site's data pooled, to convergence (``patience=0``: exactly ``max_epochs``); returns
    ``({site: test metrics}, record)``."""
    federation = federation_for(settings)
    os.makedirs(out_dir, exist_ok=True)
    pooled_path = os.path.join(out_dir, "pooled.npz")
    federation.pooled(settings.image_size).save_npz(pooled_path)
    workflow, record = train_bundle(
        pooled_path, settings, out_dir, num_classes=federation.num_classes, max_epochs=max_epochs, patience=patience
    )
    trained = dict.fromkeys((c.name for c in federation.clients), workflow)
    return _score_sites(settings, federation.clients, out_dir, trained), record
