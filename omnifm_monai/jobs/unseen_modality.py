"""The unseen-modality protocol (FedDG's leave-one-domain-out; the paper's "modality-robust" claim).

The federation trains without the sites of one modality ``M`` (the job option ``--modalities``: every other
modality). After the run, one site of modality ``M`` joins: its share of a one-site federation of ``M``
(the same scenario, seed, image size and samples per site; labels in the training federation's label
space, which must be the same class list), and is scored twice on its own test split:

- **received**: the final global state loaded over a fresh private state (the bundle's initial weights),
  through :meth:`SiteTrainer.receive <omnifm_monai.flare.client.SiteTrainer.receive>`: the strategy's
  ``on_receive`` recalibrates the BatchNorm statistics on the site's training data where the strategy does
  (OmniFM). For a strategy with a knowledge base (OmniFM) the site first computes its spectral tokens with
  the received weights and the server retrieves its prototypes for them (the queries a site uploads with
  its first update; here no training precedes them);
- **adapted**: after ``adapt_epochs`` epochs of the bundle's trainer on the site's own training data in
  which only :func:`adaptation_keys` change (the strategy's private keys; a strategy with no private
  weights, FedAvg-like, adapts what FedBN and FedPer keep private: the normalisation layers and the task
  head). Every other entry of the state dict, BatchNorm buffers included, is restored bit for bit.

``local`` (every key private) has no global model to receive: its "received" row is the fresh network and
its "adapted" row is the site training alone for ``adapt_epochs`` epochs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from omnifm_monai.jobs.cross_site import final_server_core, load_settings, site_trainer
from omnifm_monai.jobs.settings import JobSettings

__all__ = [
    "DEFAULT_ADAPT_EPOCHS",
    "UNSEEN_SITE",
    "adapt_only",
    "adaptation_keys",
    "score_unseen_modality",
    "training_modalities",
    "unseen_markdown",
    "unseen_site_settings",
]

DEFAULT_ADAPT_EPOCHS = 3
UNSEEN_SITE = "site-1"
"""The joining site's name in its one-site federation of the held-out modality."""


def training_modalities(settings: JobSettings, held_out: str) -> list[str]:
    """The modalities the federation trains on: ``settings.modalities`` (phantom default: all) without ``held_out``.

    Raises:
        ValueError: not a classification job, ``held_out`` not among them, or real files without
            ``modalities`` (their list is the user's, e.g. ``--modalities US,XRAY,OCT``).
    """
    from omnifm_monai.data.phantom.properties import MODALITIES

    if settings.task != "classification":
        raise ValueError(f"the unseen-modality protocol needs task 'classification', got {settings.task!r}.")
    if settings.modalities:
        known = list(settings.modalities)
    elif not settings.federation_data:
        known = list(MODALITIES)
    else:
        raise ValueError(
            f"--federation-data {settings.federation_data!r}: give --modalities (the files' modalities or flags, "
            "the held-out one among them) for the unseen-modality protocol."
        )
    kept = [m for m in known if m.lower() != held_out.lower()]
    if len(kept) == len(known) or not kept:
        raise ValueError(f"held-out modality {held_out!r} must be one of {known}, which must name another one.")
    return kept


def unseen_site_settings(settings: JobSettings, held_out: str, state_root: str) -> JobSettings:
    """The one-site federation of ``held_out`` (same scenario, seed, data, size), its site folder under
    ``state_root`` (a fresh private state)."""
    first_size = settings.site_sizes.split(",")[0].strip() if settings.site_sizes else ""
    return dataclasses.replace(
        settings,
        num_clients=1,
        modalities=[held_out],
        site_sizes="",
        samples_per_client=int(first_size) if first_size else settings.samples_per_client,
        state_root=state_root,
    )


def adaptation_keys(strategy, network: nn.Module) -> set[str]:
    """The state-dict keys the joining site adapts: the strategy's private keys, or, where it keeps no weight
    private (FedAvg, FedProx, SCAFFOLD, ...), the normalisation layers and the task head."""
    from omnifm_monai.strategies import TASK_HEAD_KEYS, norm_layer_keys
    from omnifm_monai.strategies.base import Strategy

    parameters = dict(network.named_parameters())
    private = strategy.private_keys(network)
    if private & set(parameters):
        return private
    head = Strategy(name="adapt", private_patterns=(TASK_HEAD_KEYS,)).private_keys(network)
    return head | norm_layer_keys(network)


def adapt_only(network: nn.Module, trainer, keys: set[str], epochs: int, strategy=None) -> list[str]:
    """Train ``epochs`` more epochs of ``trainer`` (the bundle's ``SupervisedTrainer`` over ``network``) in which
    only the parameters in ``keys`` receive gradients; every other state entry is restored afterwards (buffers:
    the running statistics of a shared BatchNorm layer). ``strategy``: its ``before_training`` runs first
    (FedProx's anchor). Returns the parameter names trained.

    Raises:
        ValueError: ``epochs < 1`` or ``keys`` names no parameter of ``network``.
    """
    if epochs < 1:
        raise ValueError(f"adapt epochs={epochs} must be >= 1.")
    trained = [name for name, _ in network.named_parameters() if name in keys]
    if not trained:
        raise ValueError(f"adaptation keys {sorted(keys)[:5]} name no parameter of the network.")
    frozen = {k: v.detach().clone() for k, v in network.state_dict().items() if k not in keys}
    flags = {name: p.requires_grad for name, p in network.named_parameters()}
    for name, p in network.named_parameters():
        p.requires_grad_(name in keys)
    try:
        if strategy is not None:
            strategy.before_training(network, trainer)
        trainer.state.max_epochs = trainer.state.epoch + epochs
        trainer.run()
    finally:
        for name, p in network.named_parameters():
            p.requires_grad_(flags[name])
        network.load_state_dict(frozen, strict=False)
    return trained


def score_unseen_modality(
    state_root: str, held_out: str, out_dir: str, adapt_epochs: int = DEFAULT_ADAPT_EPOCHS
) -> dict[str, Any]:
    """The held-out modality's site scored with a finished run's final global state, before and after adapting.

    Args:
        state_root: the run's state root (``settings.json``, ``server/``), trained without ``held_out``.
        held_out: the modality left out of training (a phantom modality, or a file's modality or flag).
        out_dir: the joining site's folder (its data, fresh private state, checkpoints).
        adapt_epochs: epochs of the private-only adaptation.

    Returns:
        ``{"modality", "strategy", "adapt_epochs", "adapted_parameters", "num_prototypes", "received": metrics,
        "adapted": metrics}``.

    Raises:
        ValueError: the held-out modality's classes are not the training federation's class list.
    """
    from omnifm_monai.flare.constants import MetaKey
    from omnifm_monai.jobs.builder import federation_for

    settings = load_settings(state_root)
    core, class_names, num_classes = final_server_core(settings)
    unseen = unseen_site_settings(settings, held_out, os.path.join(out_dir, "state"))
    joined = federation_for(unseen)
    if tuple(getattr(joined, "class_names", ())) != tuple(class_names):
        raise ValueError(
            f"held-out modality {held_out!r} has classes {list(joined.class_names)}, the federation "
            f"{list(class_names)}: use one label space (the phantom, or a label map)."
        )
    site = site_trainer(unseen, UNSEEN_SITE, class_names, num_classes, os.path.join(out_dir, "scratch"))
    if site.store.exists():
        raise ValueError(f"{site.store.path} exists: the joining site must start with a fresh private state.")
    name = f"unseen-{held_out}"  # never a training site's name: the server has no queries or entries of its own
    params, meta = core.payload(name)
    if site.strategy.uses_knowledge_base:  # its tokens with the received weights, then the server's retrieval
        site.receive(params, meta)
        tokens = site.strategy.spectral_summary(
            site.network, site.train_images, site.centroid_groups, seed=site.args.seed
        )
        core.site_queries[name] = np.asarray(tokens, np.float32)  # (K, d_s)
        params, meta = core.payload(name)
    site.receive(params, meta)
    received = site.evaluate()
    keys = adaptation_keys(site.strategy, site.network)
    trained = adapt_only(site.network, site.trainer, keys, adapt_epochs, strategy=site.strategy)
    return {
        "modality": held_out,
        "strategy": settings.strategy,
        "adapt_epochs": adapt_epochs,
        "adapted_parameters": len(trained),
        "num_prototypes": int(len(meta.get(MetaKey.PROTOTYPES, ()))),
        "received": received,
        "adapted": site.evaluate(),
    }


def unseen_markdown(records: Sequence[Mapping[str, Any]], metric: str = "restricted_accuracy") -> list[str]:
    """Markdown lines: per participation and label, ``metric`` of the joining site received and adapted (mean ±
    standard deviation over the seeds; ``records``: the benchmark's run records with an ``"unseen"`` entry)."""
    scored = [r for r in records if r.get("unseen")]
    if not scored:
        return []
    first = scored[0]["unseen"]
    lines = [
        "",
        f"Unseen modality {first['modality']} (left out of training; one site of it joins after the last round), "
        f"{metric} on its test split (%): received = the final global model over a fresh private state; "
        f"adapted = after {first['adapt_epochs']} epoch(s) training only its private parts (FedAvg-like: "
        "normalisation layers and task head) on its own training data.",
        "",
        "| participation | strategy | received | adapted | seeds |",
        "|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r["participation"], r["label"]) for r in scored)
    for participation, label in keys:
        group = [r["unseen"] for r in scored if (r["participation"], r["label"]) == (participation, label)]
        cells = []
        for stage in ("received", "adapted"):
            values = [g[stage][metric] for g in group]
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            cells.append(f"{100 * float(np.mean(values)):.1f} ± {100 * spread:.1f}")
        lines.append(f"| {participation} | {label} | {cells[0]} | {cells[1]} | {len(group)} |")
    return lines
