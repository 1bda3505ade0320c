"""Classification in the federated pipeline: the phantom / MedMNIST federations and per-site accuracy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.tasks.base import FederatedTask, predict_in_batches, stack_images

__all__ = ["ClassificationTask"]


class ClassificationTask(FederatedTask):
    """Image classification (``bundles/omnifm_classification``); :mod:`omnifm_monai.metrics.classification`."""

    name = "classification"
    bundle = "omnifm_classification"
    headline_metric = "restricted_accuracy"
    report_metrics = ("restricted_accuracy", "accuracy", "restricted_macro_f1", "macro_f1")
    uses_num_classes = True

    @staticmethod
    def federation_builder():
        from omnifm_monai.data.federation import build_federation

        return build_federation

    def test_evaluator(self, dataset_dir: str, parser: ConfigParser) -> Callable[[nn.Module], dict[str, float]]:
        """Accuracy and macro-F1, over all labels and restricted to the site's own label space.

        The site's label space is read from its ``.npz`` when it stores one, else it is every label.
        """
        from omnifm_monai.data.classification import load_classification_split
        from omnifm_monai.data.medmnist import load_medmnist
        from omnifm_monai.metrics.classification import classification_metrics

        image_size, in_channels, num_classes = (
            parser.get_parsed_content(k) for k in ("image_size", "in_channels", "num_classes")
        )
        items = load_classification_split(dataset_dir, "test", image_size=image_size, in_channels=in_channels)
        images = stack_images(items)  # (N, C, S, S), stacked once and reused every round
        labels = np.asarray([int(d["label"]) for d in items])  # (N,)
        label_space = tuple(range(num_classes))
        if str(dataset_dir).endswith(".npz"):
            label_space = load_medmnist(dataset_dir).label_space

        def evaluate(network: nn.Module) -> dict[str, float]:
            logits = predict_in_batches(network, images)  # (N, num_classes)
            return classification_metrics(logits.numpy(), labels, label_space)

        return evaluate

    def centroid_groups(self, items: list[dict]) -> np.ndarray:
        """One centroid per local class."""
        return np.asarray([int(d["label"]) for d in items])
