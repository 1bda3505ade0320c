"""What the task-agnostic federated pipeline needs from one task.

The NVFlare controller, client script and job builder never look at labels, masks or metrics
themselves: everything task-specific goes through a :class:`FederatedTask`. A task is the pair
(bundle, this adapter); adding a task means adding both, nothing else.

The client builds the bundle's own ``train.json`` workflow with these overrides, so every task's
bundle defines the ids ``dataset_dir``, ``image_size``, ``seed``, ``ckpt_dir``, ``output_dir``,
``val_interval``, ``progress_bar``, ``spectral``, ``prompt`` (and ``num_classes`` when
:attr:`FederatedTask.uses_num_classes`), ``network_def``/``network`` (an
:class:`~omnifm_monai.networks.base.OmniFMNetwork`), and ``train#trainer`` whose data loader's
dataset holds ``[{"image": (C, *S) array, ...}]`` of one fixed shape (the spectral centroids are
computed from those images).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import RandomizableTrait, Transform
from torch import nn

__all__ = ["FederatedTask", "TaskFederation", "SiteData", "stack_images", "dataset_images", "predict_in_batches"]


def stack_images(items: list[dict]) -> torch.Tensor:
    """``[{"image": (C, *S)}, ...]`` -> (N, C, *S) float tensor."""
    return torch.as_tensor(np.stack([np.asarray(d["image"]) for d in items]))


def dataset_images(dataset) -> torch.Tensor:
    """(N, C, *S): every image of a MONAI dataset as it is before the dataset's random transforms.

    Items that hold arrays are stacked as they are (:func:`stack_images`); items that hold file paths (a lazily
    loading dataset, :mod:`omnifm_monai.data.lazy_dataset`) go through the dataset's transform up to its first
    random one (the file reader and the deterministic preprocessing, no augmentation).
    """
    items = dataset.data
    if not len(items) or not isinstance(items[0]["image"], (str, os.PathLike)):
        return stack_images(items)
    transform = dataset.transform
    first_random = transform.get_index_of_first(
        lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform)
    )
    return stack_images([transform(dict(d), end=first_random) for d in items])


@torch.no_grad()
def predict_in_batches(network: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """``network`` in eval mode over images (N, C, *S) -> its outputs (N, ...) on the CPU."""
    network.eval()
    device = next(network.parameters()).device
    return torch.cat([network(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


def _modality_list(modalities: str | Sequence[str]) -> list[str]:
    """``"CT,US"`` or ``["CT", "US"]`` -> ``["CT", "US"]``."""
    return [m for m in modalities.split(",") if m] if isinstance(modalities, str) else list(modalities)


class SiteData(Protocol):
    """One site's share of a simulated federation."""

    name: str

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write it so that the task's bundle reads it back with ``dataset_dir=path``."""


class TaskFederation(Protocol):
    """A simulated federation: one :class:`SiteData` per site, named ``site-1`` .. ``site-N``."""

    clients: tuple[SiteData, ...]

    @property
    def num_classes(self) -> int:
        """Size of the federation's label space (0 when the task has none)."""

    def client(self, name: str) -> SiteData:
        """The site called ``name`` (``KeyError`` if none)."""

    def summary(self) -> str:
        """A Markdown table: which site holds what."""


class FederatedTask(ABC):
    """One task's side of the federated pipeline.

    Attributes:
        name: the ``--task`` value.
        bundle: folder name of the task's MONAI bundle under ``bundles/``.
        headline_metric: the metric progress lines, the job's key metric and the report lead with
            (higher is better).
        report_metrics: per-site metrics the report averages over sites, in column order.
        uses_num_classes: the bundle's network takes ``num_classes`` from the federation.
    """

    name: ClassVar[str]
    bundle: ClassVar[str]
    headline_metric: ClassVar[str]
    report_metrics: ClassVar[tuple[str, ...]]
    uses_num_classes: ClassVar[bool] = False

    @staticmethod
    @abstractmethod
    def federation_builder() -> Callable[..., TaskFederation]:
        """The task's ``build_*_federation`` function of :mod:`omnifm_monai.data.federation` (imported lazily)."""

    def build_federation(
        self,
        scenario: str,
        num_clients: int,
        *,
        seed: int,
        data_dir: str | None,
        image_size: int,
        samples_per_client: int | None,
        label_map: str = "",
        site_sizes: str = "",
        modalities: Sequence[str] = (),
    ) -> TaskFederation:
        """The simulated federation every site and the server build identically from the same arguments.

        An empty ``data_dir`` means the phantom; ``samples_per_client`` of ``None`` or 0 keeps the
        builder's default; ``label_map``, ``site_sizes`` and ``modalities`` go to the builder only when given
        (the classification builder knows them).
        """
        extra = {"samples_per_client": samples_per_client} if samples_per_client else {}
        extra |= {k: v for k, v in (("label_map", label_map), ("site_sizes", site_sizes)) if v}
        if modalities:
            extra["modalities"] = list(modalities)
        return self.federation_builder()(
            scenario, num_clients, seed=seed, data_dir=data_dir or None, image_size=image_size, **extra
        )

    def federation_from(self, options) -> TaskFederation:
        """:meth:`build_federation` from a job's options: the same call on the server and at every site.

        Args:
            options: anything with ``scenario``, ``num_clients``, ``seed``, ``federation_data``,
                ``image_size`` and ``samples_per_client`` attributes, optionally ``label_map``, ``site_sizes``
                and ``modalities`` (a list, or one string joined by commas: the job's settings, the client's
                parsed command line); an empty
                ``federation_data`` means the phantom, a ``samples_per_client`` of 0 the task's default.
        """
        return self.build_federation(
            options.scenario,
            options.num_clients,
            seed=options.seed,
            data_dir=options.federation_data or None,
            image_size=options.image_size,
            samples_per_client=options.samples_per_client or None,
            label_map=getattr(options, "label_map", ""),
            site_sizes=getattr(options, "site_sizes", ""),
            modalities=_modality_list(getattr(options, "modalities", ())),
        )

    @abstractmethod
    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """Load the site's ``split`` (the test split unless told: the client also scores ``"val"``, which is what
        settings are chosen on) once (``parser`` is the bundle's parsed ``train.json``, for
        ``image_size`` and the like); the returned callable scores a network on it: every value a
        finite float, :attr:`headline_metric` always among the keys; a report metric without data at
        the site (e.g. no open questions) may be left out, and the report averages it over the sites
        that have it."""

    def federation_bundle_overrides(self, federation: TaskFederation) -> dict:
        """Bundle ids a simulated federation fixes for the server's network and every site's (default: none;
        VQA: the question vocabulary's size, which the server cannot read from a site archive)."""
        return {}

    def data_class_names(self, dataset_dir: str) -> tuple[str, ...] | None:
        """The classes of a site's data, by label id (``None``: the task has no named classes)."""
        return None

    def federation_class_names(self, per_site: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
        """The federation's class names from the sites' own (those readable where the job is built).

        The default keeps label values as they are (mask values cannot be renumbered): the longest list,
        which every site's must start with (each site checks its own at start).
        """
        return max(per_site, key=len)

    def check_site_classes(self, dataset_dir: str, class_names: Sequence[str], site: str) -> str:
        """Check a site's data against the federation's class names at start; returns a line for the log.

        The default requires label ``i`` to name ``class_names[i]`` at every site (a site may hold fewer).

        Raises:
            ValueError: one line naming the site, its classes and the expected ones.
        """
        held = self.data_class_names(dataset_dir)
        if held is None:
            return f"{site}: no class names to check"
        if tuple(held) != tuple(class_names)[: len(held)]:
            raise ValueError(
                f"{site}: label values name {list(held)}, the federation's are {list(class_names)}; label i must "
                'name the same class at every site (fix the site\'s label names, e.g. dataset.json "labels").'
            )
        return f"{site}: classes {list(held)} match the federation's {list(class_names)}"

    def centroid_groups(self, items: list[dict]) -> np.ndarray | None:
        """One group id per training item: the site uploads one spectral centroid per group.

        ``None`` (the default, for tasks without image-level labels) makes the site cluster its
        tokens instead (see :func:`omnifm_monai.flare.payload.spectral_centroids`).
        """
        return None
