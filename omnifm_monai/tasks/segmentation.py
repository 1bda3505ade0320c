"""Segmentation in the federated pipeline: the phantom federation and per-site Dice / HD95."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.metrics.segmentation import segmentation_metrics
from omnifm_monai.tasks.base import FederatedTask
from omnifm_monai.tasks.classification import predict_in_batches, stack_images

__all__ = ["SegmentationTask"]


class SegmentationTask(FederatedTask):
    """Semantic segmentation (``bundles/omnifm_segmentation``)."""

    name = "segmentation"
    bundle = "omnifm_segmentation"
    headline_metric = "dice"
    report_metrics = ("dice", "hd95", "pixel_accuracy")
    uses_num_classes = True

    @staticmethod
    def federation_builder():
        from omnifm_monai.data.federation import build_segmentation_federation

        return build_segmentation_federation

    def data_class_names(self, dataset_dir: str) -> tuple[str, ...]:
        """The mask values' names (:func:`~omnifm_monai.data.segmentation.segmentation_class_names`: MSD ``labels``)."""
        from omnifm_monai.data.segmentation import segmentation_class_names

        return segmentation_class_names(dataset_dir)

    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """:func:`~omnifm_monai.metrics.segmentation_metrics` of the network's argmax on the site's test split.

        HD95 is in mm when every test item carries a ``"spacing"`` (mm per spatial axis of its resized grid: the
        real federation's site files record it), else at 1 mm per pixel (the phantom's: in pixels).
        """
        from omnifm_monai.data.segmentation import load_segmentation_split, segmentation_class_names

        keys = ("image_size", "in_channels", "spatial_dims", "num_samples", "seed", "num_classes")
        image_size, in_channels, spatial_dims, num_samples, seed, num_classes = (
            parser.get_parsed_content(k) for k in keys
        )
        items = load_segmentation_split(
            dataset_dir,
            split,
            image_size=image_size,
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            num_samples=num_samples,
            seed=seed,
        )
        images = stack_images(items)  # (N, C, *S), stacked once and reused every round
        labels = torch.as_tensor(np.stack([d["label"][0] for d in items]))  # (N, *S)
        names = list(segmentation_class_names(dataset_dir))[:num_classes]
        has_spacing = items and all("spacing" in d for d in items)
        spacing = [tuple(float(v) for v in d["spacing"]) for d in items] if has_spacing else None  # MONAI: floats

        def evaluate(network: nn.Module) -> dict[str, float]:
            logits = predict_in_batches(network, images, batch_size=32)  # (N, K, *S)
            return segmentation_metrics(logits.argmax(dim=1), labels, names, spacing=spacing)

        return evaluate
