"""Visual question answering: exact-match answer accuracy, overall, by answer type and by question type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["vqa_metrics"]


def vqa_metrics(
    predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    answer_types: Sequence[str],
    question_types: Sequence[str],
) -> dict[str, float]:
    """Exact-match accuracy overall, on closed and open questions and per question type.

    Args:
        predictions: predicted answer ids (N,).
        labels: true answer ids (N,); -1 (an answer outside the vocabulary) is always wrong.
        answer_types: ``"closed"``/``"open"`` per question.
        question_types: question type per question.

    Returns:
        ``accuracy``, ``closed_accuracy``, ``open_accuracy`` and ``accuracy_<type>``, each a finite float; a
        category without questions is left out (``accuracy`` is 0.0 for no questions at all).
    """
    pred, true = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if not (len(pred) == len(true) == len(answer_types) == len(question_types)):
        raise ValueError(
            f"predictions, labels, answer_types and question_types differ in length: {len(pred)}, {len(true)}, "
            f"{len(answer_types)}, {len(question_types)}."
        )
    correct = (pred == true) & (true >= 0)  # (N,)
    metrics = {"accuracy": float(correct.mean()) if len(correct) else 0.0}
    answer_types, question_types = np.asarray(answer_types, dtype=str), np.asarray(question_types, dtype=str)
    for kind in ("closed", "open"):
        chosen = answer_types == kind
        if chosen.any():
            metrics[f"{kind}_accuracy"] = float(correct[chosen].mean())
    for qtype in sorted(set(question_types.tolist())):
        metrics[f"accuracy_{qtype}"] = float(correct[question_types == qtype].mean())
    return metrics
