"""Tests of the training batch size that every bundle's drop_last training loader uses."""

import pytest

from omnifm_monai.data.batching import training_batch_size


@pytest.mark.parametrize(("batch_size", "items", "expected"), [(8, 17, 8), (8, 8, 8), (8, 5, 5), (8, 2, 2)])
def test_batch_size_fits_the_site(batch_size, items, expected):
    assert training_batch_size(batch_size, items) == expected


def test_too_small_sites_and_bad_batch_sizes_are_one_line():
    with pytest.raises(ValueError, match="1 item\\(s\\); at least 2"):
        training_batch_size(8, 1)
    with pytest.raises(ValueError, match="batch_size=0"):
        training_batch_size(0, 10)
