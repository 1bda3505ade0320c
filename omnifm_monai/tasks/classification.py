"""Classification in the federated pipeline: the phantom / MedMNIST federations and per-site accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """Accuracy and macro-F1, over all labels and restricted to the site's own label space.

        Labels are ids in the bundle's ``class_names`` (the federation's, when the job gives them); the
        site's label space is the ids of the classes its data holds (a ``.npz``: its stored label space).
        """
        from omnifm_monai.data.classification import load_classification_split
        from omnifm_monai.data.federation_classes import federation_label_ids, held_classes
        from omnifm_monai.metrics.classification import classification_metrics

        image_size, in_channels, class_names = (
            parser.get_parsed_content(k) for k in ("image_size", "in_channels", "class_names")
        )
        items = load_classification_split(
            dataset_dir, split, image_size=image_size, in_channels=in_channels, class_names=class_names
        )
        images = stack_images(items)  # (N, C, S, S), stacked once and reused every round
        labels = np.asarray([int(d["label"]) for d in items])  # (N,)
        ids = federation_label_ids(held_classes(dataset_dir), class_names, where=f"dataset_dir '{dataset_dir}'")
        label_space = tuple(sorted(ids.values()))

        def evaluate(network: nn.Module) -> dict[str, float]:
            logits = predict_in_batches(network, images)  # (N, num_classes)
            return classification_metrics(logits.numpy(), labels, label_space)

        return evaluate

    def data_class_names(self, dataset_dir: str) -> tuple[str, ...]:
        """:func:`~omnifm_monai.data.classification.class_names_for` (the contract for "the classes of this data")."""
        from omnifm_monai.data.classification import class_names_for

        return class_names_for(dataset_dir)

    def federation_class_names(self, per_site: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
        """Every site's classes, sorted (as one site's class folders are): sites are renumbered onto them."""
        return tuple(sorted({name for names in per_site for name in names}))

    def check_site_classes(self, dataset_dir: str, class_names: Sequence[str], site: str) -> str:
        """A site may hold a subset of the federation's classes (its ids then follow the federation's list);
        a class the federation does not name is refused (:mod:`omnifm_monai.data.federation_classes`)."""
        from omnifm_monai.data.federation_classes import federation_label_ids, held_classes

        ids = federation_label_ids(held_classes(dataset_dir), class_names, where=site)
        missing = [n for i, n in enumerate(class_names) if i not in ids.values()]
        held = sorted(ids.values())
        line = f"{site}: classes {[class_names[i] for i in held]} -> federation ids {held}"
        return line + (f"; the site holds no {missing}" if missing else "")

    def centroid_groups(self, items: list[dict]) -> np.ndarray:
        """One centroid per local class."""
        return np.asarray([int(d["label"]) for d in items])
