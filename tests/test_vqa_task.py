"""VQATask: the evaluator on a tiny site, the federation it builds."""

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from omnifm_monai.tasks import get_task
from omnifm_monai.tasks.vqa import VQATask


def test_task_registration_and_federation():
    task = get_task("vqa")
    assert isinstance(task, VQATask) and task.bundle == "omnifm_vqa" and task.uses_num_classes
    assert task.headline_metric in task.report_metrics
    fed = task.build_federation("modality_specific", 2, seed=0, data_dir="", image_size=16, samples_per_client=None)
    assert fed.num_classes == 40 and len(fed.clients) == 2
    assert task.centroid_groups([{"image": np.zeros((3, 4, 4))}]) is None


class _Constant(torch.nn.Module):
    """Always answers ``answer``."""

    def __init__(self, answer: int, num_answers: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answer, self.num_answers = answer, num_answers

    def forward(self, image, question):
        logits = torch.zeros(image.shape[0], self.num_answers)
        logits[:, self.answer] = 1.0
        return logits


def test_evaluator_on_a_site(tmp_path):
    fed = VQATask().build_federation("iid", 1, seed=0, data_dir=None, image_size=16, samples_per_client=10)
    site = fed.client("site-1")
    site.save_npz(tmp_path / "site.npz")
    parser = ConfigParser({"image_size": 16, "in_channels": 3, "max_question_length": 20})
    evaluate = VQATask().test_evaluator(str(tmp_path / "site.npz"), parser)
    yes = fed.vocabularies.answers.index("yes")
    metrics = evaluate(_Constant(yes, fed.num_classes))
    answers = [p["answer"] for p in site.qa["test"]]
    assert metrics["accuracy"] == pytest.approx(answers.count("yes") / len(answers))
    assert metrics["open_accuracy"] == 0.0  # "yes" is never an open answer
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert {"accuracy_modality", "accuracy_presence"} <= set(metrics)
