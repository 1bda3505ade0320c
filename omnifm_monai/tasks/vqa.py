"""Visual question answering in the federated pipeline: phantom or derived VQA federations, per-site answer accuracy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.metrics.vqa import vqa_metrics
from omnifm_monai.tasks.base import FederatedTask, stack_images

__all__ = ["VQATask"]


class VQATask(FederatedTask):
    """Visual question answering (``bundles/omnifm_vqa``): closed-set answer classification.

    ``num_classes`` is the size of the global answer vocabulary
    (:func:`omnifm_monai.data.vqa_vocabulary.phantom_vocabularies` for phantom federations,
    :func:`omnifm_monai.data.vqa_derived.derived_vocabularies` for federations derived from real masks).
    """

    name = "vqa"
    bundle = "omnifm_vqa"
    headline_metric = "accuracy"
    report_metrics = ("accuracy", "closed_accuracy", "open_accuracy")
    uses_num_classes = True

    @staticmethod
    def federation_builder():
        from omnifm_monai.data.federation import build_vqa_federation

        return build_vqa_federation

    def federation_bundle_overrides(self, federation) -> dict:
        """``vocab_size`` of the federation's global vocabularies (the server's bundle has no site archive to read
        them from; a derived federation's differ from the phantom's)."""
        return {"vocab_size": federation.vocabularies.vocab_size}

    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """Overall, closed, open and per-question-type accuracy on the site's test questions.

        A category without questions at the site is left out (the report averages it over the sites that have it).
        """
        from omnifm_monai.data.vqa import load_vqa_split

        image_size, in_channels, max_length = (
            parser.get_parsed_content(k) for k in ("image_size", "in_channels", "max_question_length")
        )
        items = load_vqa_split(
            dataset_dir, split, image_size=image_size, in_channels=in_channels, max_length=max_length
        )
        images = stack_images(items)  # (N, C, S, S), stacked once and reused every round
        questions = torch.as_tensor(np.stack([d["question"] for d in items]))  # (N, T)
        labels = np.asarray([int(d["label"]) for d in items])  # (N,)
        answer_types = [d["answer_type"] for d in items]
        question_types = [d["question_type"] for d in items]

        @torch.no_grad()
        def evaluate(network: nn.Module) -> dict[str, float]:
            network.eval()
            device = next(network.parameters()).device
            logits = [
                network(images[i : i + 128].to(device), questions[i : i + 128].to(device)).cpu()
                for i in range(0, len(images), 128)
            ]
            predictions = torch.cat(logits).argmax(dim=1).numpy()  # (N,)
            return vqa_metrics(predictions, labels, answer_types, question_types)

        return evaluate
