"""Per-site classification metrics, over the union label space and restricted to the site's own."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["macro_f1", "classification_metrics"]


def macro_f1(predictions: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> float:
    """Unweighted mean over ``classes`` of the per-class F1 (a class absent from both counts as 0)."""
    scores = []
    for c in classes:
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def classification_metrics(logits: np.ndarray, labels: np.ndarray, label_space: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 of one site's predictions, two ways.

    Args:
        logits: (N, num_classes) over the union label space.
        labels: (N,) integer labels in the union space.
        label_space: the classes this site has; ``restricted_*`` metrics take the argmax over
            these classes only (fair to every strategy when sites' label spaces differ).

    Returns:
        ``accuracy``, ``macro_f1`` (argmax over all classes, F1 averaged over the site's classes),
        ``restricted_accuracy``, ``restricted_macro_f1``, ``majority_rate`` (accuracy of always
        predicting the site's most frequent test class) and ``num_samples``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits must be (N, C) with N = {len(labels)} labels, got {logits.shape}.")
    space = np.asarray(sorted(set(int(c) for c in label_space)))
    if space.size == 0 or space.max() >= logits.shape[1] or space.min() < 0:
        raise ValueError(f"label_space {space.tolist()} does not fit {logits.shape[1]} classes.")
    predictions = logits.argmax(axis=1)
    restricted = space[logits[:, space].argmax(axis=1)]
    counts = np.bincount(labels, minlength=logits.shape[1])
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "macro_f1": macro_f1(predictions, labels, space),
        "restricted_accuracy": float(np.mean(restricted == labels)),
        "restricted_macro_f1": macro_f1(restricted, labels, space),
        "majority_rate": float(counts.max() / max(1, len(labels))),
        "num_samples": float(len(labels)),
    }
