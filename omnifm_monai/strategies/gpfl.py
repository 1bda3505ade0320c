"""GPFL (Zhang et al., "GPFL: Simultaneously Learning Global and Personalized Feature Information for
Personalized Federated Learning", ICCV 2023), small.

The network's feature f (the input of ``task_head``, (B, F)) goes through a conditional valve (CoV: two
small networks giving gamma and beta from a conditional input) twice:

    f_P = relu((1 + gamma(p)) * f + beta(p))   -> task_head (private): the prediction
    f_G = relu((1 + gamma(g)) * f + beta(g))   -> aligned with the global category embeddings (GCE)

with the personal conditional input p = sum_c freq_c * GCE_c (the site's class frequencies) and the global
g = mean_c GCE_c, both recomputed from the received GCE each round. Shared: the body, CoV and GCE; private:
the head and the two conditional inputs. The loss adds GPFL's angle-level guidance (cross-entropy of the
cosines between f_G and every GCE row) and its magnitude-level guidance (lambda * ||f_G - GCE_y||^2 to a
frozen copy of the embedding). The modules join the network as ``network.gpfl`` on the server and at every
site (:meth:`GPFL.extend_network`); f is routed through them by a forward pre-hook on ``task_head``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifm_monai.networks.base import TASK_HEAD
from omnifm_monai.strategies.base import Strategy
from omnifm_monai.strategies.fedper import TASK_HEAD_KEYS

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["GPFL", "GPFLLoss", "GlobalPersonalSplit", "class_frequencies"]


def _valve(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim))


class GlobalPersonalSplit(nn.Module):
    """GPFL's CoV and GCE over a feature of size ``feature_dim``, for ``num_classes`` classes.

    Args:
        feature_dim: F, the size of the feature entering the task head.
        num_classes: C, the rows of the global category embedding.
    """

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.gce = nn.Embedding(num_classes, feature_dim)  # (C, F), shared
        self.gamma, self.beta = _valve(feature_dim), _valve(feature_dim)  # CoV, shared
        self.register_buffer("private_personal_condition", torch.zeros(feature_dim))  # p: site-private
        self.register_buffer("private_global_condition", torch.zeros(feature_dim))  # g: from the received GCE
        self.register_buffer("private_frozen_gce", torch.zeros(num_classes, feature_dim))  # received GCE
        self.last_global_features: torch.Tensor | None = None

    def valve(self, f: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``relu((1 + gamma(condition)) * f + beta(condition))``; f (B, F), condition (F,) -> (B, F)."""
        return F.relu(f * (1 + self.gamma(condition)) + self.beta(condition))

    def set_conditions(self, frequencies: torch.Tensor) -> None:
        """p and g from the current GCE and the site's class frequencies (C,) summing to 1."""
        with torch.no_grad():
            embedding = self.gce.weight  # (C, F)
            self.private_frozen_gce.copy_(embedding)
            self.private_personal_condition.copy_(frequencies.to(embedding) @ embedding)
            self.private_global_condition.copy_(embedding.mean(0))

    def route(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Forward pre-hook of ``task_head``: f -> f_P for the head; f_G kept for the loss while training."""
        f = inputs[0]  # (B, F)
        self.last_global_features = self.valve(f, self.private_global_condition) if self.training else None
        return (self.valve(f, self.private_personal_condition), *inputs[1:])

    def guidance(self, label: torch.Tensor, *, magnitude_weight: float) -> torch.Tensor:
        """Angle-level plus ``magnitude_weight`` * magnitude-level guidance of the last f_G (B, F)."""
        f_global = self.last_global_features
        if f_global is None:
            raise RuntimeError("no global feature kept: the network's training forward must run first.")
        label = label.reshape(len(f_global)).long()  # (B,)
        cosine = F.normalize(f_global, dim=-1) @ F.normalize(self.gce.weight, dim=-1).T  # (B, C)
        angle = F.cross_entropy(cosine, label)
        magnitude = (f_global - self.private_frozen_gce[label]).pow(2).sum(-1).mean()
        return angle + magnitude_weight * magnitude


class GPFLLoss(nn.Module):
    """``task_loss(pred, label) + angle + lambda * magnitude`` (:meth:`GlobalPersonalSplit.guidance`)."""

    def __init__(self, *, task_loss: Callable, split: GlobalPersonalSplit, magnitude_weight: float) -> None:
        super().__init__()
        self.task_loss, self.magnitude_weight = task_loss, magnitude_weight
        self._split = [split]  # not a submodule: the loss never owns the network's parameters

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        guidance = self._split[0].guidance(label, magnitude_weight=self.magnitude_weight)
        return self.task_loss(pred, label) + guidance


def class_frequencies(labels: list[Any], num_classes: int) -> torch.Tensor:
    """The share of each class among a site's training labels, (C,) summing to 1.

    Raises:
        ValueError: no label, or a label outside ``[0, num_classes)``.
    """
    values = torch.as_tensor([int(torch.as_tensor(label).reshape(-1)[0]) for label in labels], dtype=torch.long)
    if len(values) == 0 or values.min() < 0 or values.max() >= num_classes:
        raise ValueError(f"gpfl: the site's training labels must be classes in [0, {num_classes}), got {values}.")
    return torch.bincount(values, minlength=num_classes).float() / len(values)


@dataclass(frozen=True, kw_only=True)
class GPFL(Strategy):
    """GPFL: shared body, CoV and GCE; a private head on the personal feature (lambda 0.01).

    Args:
        magnitude_weight: lambda of the magnitude-level guidance.

    Raises:
        ValueError: ``magnitude_weight`` is negative.
    """

    name: str = "gpfl"
    private_patterns: tuple[str, ...] = (TASK_HEAD_KEYS,)
    magnitude_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.magnitude_weight < 0:
            raise ValueError(f"magnitude_weight must be >= 0, got {self.magnitude_weight}.")

    def extend_network(self, network: nn.Module) -> None:
        head = getattr(network, TASK_HEAD, None)
        if not isinstance(head, nn.Linear):
            raise ValueError(
                f"gpfl needs a network whose {TASK_HEAD!r} is a Linear layer over a feature vector (classification, "
                f"VQA); {type(network).__name__} has {type(head).__name__}."
            )
        split = GlobalPersonalSplit(head.in_features, head.out_features).to(head.weight.device)
        network.gpfl = split
        head.register_forward_pre_hook(split.route)

    def initial_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(params)
        head = params.get(f"{TASK_HEAD}.weight")
        if head is None or any(k.startswith("gpfl.") for k in params):
            return params
        num_classes, feature_dim = np.shape(head)  # (C, F) of the Linear head
        fresh = GlobalPersonalSplit(feature_dim, num_classes).state_dict()  # sites load these shared values
        params.update({f"gpfl.{k}": v.numpy() for k, v in fresh.items()})  # ServerCore drops the private ones
        return params

    def attach_site(self, network: nn.Module, trainer: SupervisedTrainer, *, site_dir: str) -> None:
        trainer.optimizer.add_param_group({"params": list(network.gpfl.parameters())})
        trainer.loss_function = GPFLLoss(
            task_loss=trainer.loss_function, split=network.gpfl, magnitude_weight=self.magnitude_weight
        )

    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        super().on_receive(network, trainer, meta)
        items = trainer.data_loader.dataset.data
        if not all(isinstance(item, Mapping) and "label" in item for item in items):
            raise ValueError("gpfl needs a class label per training item (the datalist's 'label' key).")
        num_classes = network.gpfl.gce.num_embeddings
        network.gpfl.set_conditions(class_frequencies([item["label"] for item in items], num_classes))
