"""The server's averaging maths, without any simulator (Flower style: hand-computed numbers)."""

import numpy as np
import pytest

from omnifm_monai.strategies import WeightedMean, weighted_mean

LIKE = {"w": np.zeros(2, np.float32), "count": np.array(0, np.int64)}


def test_weighted_mean_by_sample_count():
    # Prepare: w = [1, 2] with 1 sample, [4, 6] with 3 samples -> [(1 + 12) / 4, (2 + 18) / 4] = [3.25, 5]
    uploads = [
        ({"w": np.array([1.0, 2.0], np.float32), "count": np.array(10)}, 1.0),
        ({"w": np.array([4.0, 6.0], np.float32), "count": np.array(30)}, 3.0),
    ]
    # Execute
    result = weighted_mean(uploads, like=LIKE)
    # Assert: (10 + 90) / 4 = 25, still an integer
    np.testing.assert_allclose(result["w"], [3.25, 5.0])
    assert result["w"].dtype == np.float32
    assert result["count"].dtype == np.int64 and int(result["count"]) == 25


def test_one_upload_is_returned_unchanged():
    result = weighted_mean([({"w": np.array([2.0, -1.0]), "count": np.array(7)}, 5.0)], like=LIKE)
    np.testing.assert_allclose(result["w"], [2.0, -1.0])
    assert int(result["count"]) == 7


@pytest.mark.parametrize("uploads, reason", [([], "at least one"), ([({"w": np.ones(2)}, 0.0)], "weight")])
def test_ill_arguments(uploads, reason):
    with pytest.raises(ValueError, match=reason):
        weighted_mean(uploads, like=LIKE)


def test_aggregator_reset_forgets_the_round():
    # Prepare: a round with [8, 8], then a reset and a round with [2, 4]
    aggregator = WeightedMean()
    aggregator.accept("site-1", {"w": np.full(2, 8.0)}, weight=1.0, round_num=0)
    aggregator.reset()
    # Execute
    aggregator.accept("site-1", {"w": np.array([2.0, 4.0])}, weight=2.0, round_num=1)
    result = aggregator.aggregate({"w": LIKE["w"]})
    # Assert: only the second round counts
    np.testing.assert_allclose(result["w"], [2.0, 4.0])
    assert aggregator.outgoing_meta("site-1") == {}
