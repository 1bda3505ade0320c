"""vqa_metrics on a hand-computed case; empty categories left out; lengths checked."""

import pytest

from omnifm_monai.metrics import vqa_metrics


def test_metrics_hand_computed():
    # Prepare: 4 closed questions (3 right) and 2 open ones (1 right); one open label outside the vocabulary
    predictions = [1, 0, 1, 1, 5, 7]
    labels = [1, 0, 1, 0, 5, -1]
    answer_types = ["closed", "closed", "closed", "closed", "open", "open"]
    question_types = ["presence", "presence", "finding_presence", "finding_presence", "modality", "count"]
    # Execute
    metrics = vqa_metrics(predictions, labels, answer_types, question_types)
    # Assert
    assert metrics == {
        "accuracy": pytest.approx(4 / 6),
        "closed_accuracy": pytest.approx(3 / 4),
        "open_accuracy": pytest.approx(1 / 2),
        "accuracy_presence": 1.0,
        "accuracy_finding_presence": 0.5,
        "accuracy_modality": 1.0,
        "accuracy_count": 0.0,
    }


def test_metrics_leave_out_empty_categories_and_check_lengths():
    metrics = vqa_metrics([0, 1], [0, 0], ["closed", "closed"], ["presence", "presence"])
    assert "open_accuracy" not in metrics and metrics["closed_accuracy"] == 0.5
    with pytest.raises(ValueError, match="length"):
        vqa_metrics([0], [0, 1], ["closed"], ["presence"])
