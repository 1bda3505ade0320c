"""Task adapters of the federated pipeline: one per bundle (see :mod:`omnifm_monai.tasks.base`)."""

from __future__ import annotations

import importlib

from monai.utils import look_up_option

from omnifm_monai.tasks.base import FederatedTask, SiteData, TaskFederation

__all__ = ["TASKS", "get_task", "FederatedTask", "SiteData", "TaskFederation"]

TASKS: dict[str, str] = {
    "classification": "omnifm_monai.tasks.classification:ClassificationTask",
    "segmentation": "omnifm_monai.tasks.segmentation:SegmentationTask",
    "super_resolution": "omnifm_monai.tasks.super_resolution:SuperResolutionTask",
    "vqa": "omnifm_monai.tasks.vqa:VQATask",
    "fusion": "omnifm_monai.tasks.fusion:FusionTask",
}
"""``--task`` name -> ``module:class`` of its adapter (imported on first use)."""


def get_task(name: str) -> FederatedTask:
    """The adapter of task ``name`` (``"did you mean"`` on a typo)."""
    module, cls = look_up_option(name, TASKS).split(":")
    return getattr(importlib.import_module(module), cls)()
