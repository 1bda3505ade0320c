import numpy as np
import pytest

from omnifm_monai.metrics import classification_metrics, macro_f1


def test_macro_f1_hand_computed():
    # class 0: tp=1 fp=1 fn=0 -> 2/3; class 1: tp=1 fp=0 fn=1 -> 2/3
    assert macro_f1(np.array([0, 0, 1]), np.array([0, 1, 1]), [0, 1]) == pytest.approx(2 / 3)


def test_restricted_argmax_only_over_own_labels():
    # union of 4 classes; the site has classes 2 and 3; class 0 has the largest logit everywhere
    logits = np.array([[9.0, 0, 2, 1], [9.0, 0, 1, 2], [9.0, 0, 3, 0]])
    labels = np.array([2, 3, 3])
    m = classification_metrics(logits, labels, [2, 3])
    assert m["accuracy"] == 0.0
    assert m["restricted_accuracy"] == pytest.approx(2 / 3)
    assert m["majority_rate"] == pytest.approx(2 / 3)
    assert m["num_samples"] == 3


def test_bad_label_space():
    with pytest.raises(ValueError, match="label_space"):
        classification_metrics(np.zeros((2, 3)), np.array([0, 1]), [5])
