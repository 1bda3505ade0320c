"""Tests of what every simulated federation shares (``omnifm_monai.data.federation.base``)."""

import numpy as np
import pytest

from omnifm_monai.data.federation.base import (
    check_scenario_and_clients,
    equal_shares,
    held_by_site,
    markdown_table,
    phantom_site_samples,
    shuffled_split_indices,
    site_images_uint8,
    sites_per_source,
)


def test_shuffled_split_indices_are_a_seeded_60_20_20_partition():
    # Execute
    parts = shuffled_split_indices(seed=1, site=2, samples=10)
    # Assert
    assert [len(parts[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    assert all(np.array_equal(np.sort(p), p) for p in parts.values())
    again = shuffled_split_indices(seed=1, site=2, samples=10)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)


def test_held_by_site_and_equal_shares():
    pool = ("a", "b", "c")
    assert held_by_site(4, "cross_modality_hard", pool) == ("b",)
    assert held_by_site(4, "modality_specific", pool) == ("b",)
    assert held_by_site(4, "iid", pool) == pool
    assert equal_shares(10, 3) == [4, 3, 3]


def test_sites_per_source_deals_sites_round_robin_over_the_used_sources():
    assert sites_per_source(num_clients=5, num_sources=2) == [[0, 2, 4], [1, 3]]
    assert sites_per_source(num_clients=2, num_sources=4) == [[0], [1]]  # only the first 2 sources are used
    assert sites_per_source(num_clients=3, num_sources=3) == [[0], [1], [2]]


def test_site_images_uint8_makes_mixed_sites_rgb():
    gray, rgb = np.zeros((2, 1, 4, 4)), np.ones((1, 3, 4, 4))
    assert site_images_uint8([gray]).shape == (2, 4, 4)
    mixed = site_images_uint8([gray, rgb])
    assert mixed.shape == (3, 4, 4, 3) and mixed[2].min() == 255


def test_markdown_table_is_aligned():
    assert markdown_table(("a", "bb"), [("ccc", "d")]).splitlines() == ["| a   | bb |", "|-----|----|", "| ccc | d  |"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scenario="label_skew"), "scenario='label_skew' is not supported for toy"),
        (dict(num_clients=0), "num_clients=0"),
        (dict(image_size=8), "image_size=8"),
        (dict(samples_per_client=2), "samples_per_client=2 must be >= 3"),
        (dict(data_dir="/data"), "data_dir='/data'"),
    ],
)
def test_phantom_site_samples_checks(kwargs, match):
    args = dict(
        task="toy", scenario="iid", scenarios=("iid",), num_clients=2, image_size=16, samples_per_client=None,
        default_samples=10, data_dir=None, own_data="folder", min_samples=3,
    )  # fmt: skip
    assert phantom_site_samples(**args) == 10
    with pytest.raises(ValueError, match=match):
        phantom_site_samples(**{**args, **kwargs})


def test_check_scenario_and_clients_without_a_task():
    with pytest.raises(ValueError, match=r"scenario='x' is not supported; expected one of \('iid',\)"):
        check_scenario_and_clients("x", ("iid",), 1)
