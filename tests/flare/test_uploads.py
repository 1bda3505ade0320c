"""What the server accepts: dtype, magnitude, sample count, DP report and metric checks (issue 17)."""

import json

import numpy as np
import pytest

from omnifm_monai.flare.uploads import (
    InvalidUploadError,
    clean_metrics,
    validate_dp_report,
    validate_num_samples,
    validate_tokens,
    validate_upload,
)

SHAPES = {"w": (2,), "count": ()}
DTYPES = {"w": np.dtype(np.float32), "count": np.dtype(np.int64)}


def _check(w, count=3, max_abs_value=1e8):
    return validate_upload({"w": w, "count": count}, SHAPES, set(), dtypes=DTYPES, max_abs_value=max_abs_value)


@pytest.mark.parametrize(
    "w, reason",
    [
        (np.array([1e300, 0.0]), "at most"),  # finite in float64, inf after the cast to float32
        (np.array([3e38, 3e38], np.float32), "at most"),  # two of them overflow the float32 sum
        (np.array([1, 2], np.int64), "float32 or float64"),
        (np.array([True, False]), "float32 or float64"),
        (np.array([1, 2], np.uint8), "float32 or float64"),
        (np.array([1, 2], np.float16), "float32 or float64"),
    ],
)
def test_float_parameters_accept_only_bounded_float32_or_float64(w, reason):
    with pytest.raises(InvalidUploadError, match=reason):
        _check(w)


def test_integer_counters_accept_only_integers_in_int32():
    with pytest.raises(InvalidUploadError, match="expected integers"):
        _check(np.ones(2, np.float32), count=np.array(3.0))
    with pytest.raises(InvalidUploadError, match="expected integers"):
        _check(np.ones(2, np.float32), count=np.array(True))
    with pytest.raises(InvalidUploadError, match="beyond"):
        _check(np.ones(2, np.float32), count=np.array(2**40))


def test_a_float64_upload_is_returned_in_the_global_dtype():
    # Prepare: 0.1 in float64 and a Python int counter
    arrays = _check(np.array([0.1, -2.5]), count=7)
    # Assert: float32 like the global parameter, same values
    assert arrays["w"].dtype == np.float32 and arrays["count"].dtype == np.int64
    np.testing.assert_array_equal(arrays["w"], np.array([0.1, -2.5], np.float32))


@pytest.mark.parametrize("value", [10**12, 10**308, 10**400, True, 0, -3, 2.0, "10"])
def test_sample_counts_outside_the_cap_are_refused_without_overflow(value):
    with pytest.raises(InvalidUploadError, match="num_samples"):
        validate_num_samples(value, max_num_samples=10**7)


def test_sample_count_must_stay_consistent_with_the_first_report():
    # a site that reported 100 may later report 50..200 (factor 2), not 201 or 49
    assert validate_num_samples(200, max_num_samples=10**7, previous=100) == 200
    assert validate_num_samples(np.int64(50), max_num_samples=10**7, previous=100) == 50
    for value in (201, 49):
        with pytest.raises(InvalidUploadError, match="inconsistent"):
            validate_num_samples(value, max_num_samples=10**7, previous=100)


@pytest.mark.parametrize("report", ["abc", [0.5, "x", 1e-5], [float("nan")], [-1.0], [], [1.0] * 9, 3.0])
def test_dp_reports_must_be_short_lists_of_finite_non_negative_numbers(report):
    with pytest.raises(InvalidUploadError, match="dp_epsilon"):
        validate_dp_report(report)


def test_dp_report_is_returned_as_python_floats():
    assert validate_dp_report(np.array([0.5, 2.5, 1e-5], np.float32)) == pytest.approx([0.5, 2.5, 1e-5])


def test_metrics_become_json_numbers_and_unusable_ones_are_dropped():
    # Prepare: numpy scalars (float32 breaks json.dumps), a NaN, a string, a bool and an array
    metrics = {"accuracy": np.float32(0.75), "bytes": np.int64(12), "loss": float("nan"), "note": "hi",
               "ok": True, "vec": np.ones(3), 7: 1.0}  # fmt: skip
    # Execute
    kept, dropped = clean_metrics(metrics)
    # Assert
    assert kept == {"accuracy": 0.75, "bytes": 12}
    assert type(kept["accuracy"]) is float and type(kept["bytes"]) is int
    assert json.loads(json.dumps(kept)) == kept
    assert len(dropped) == 5
    assert clean_metrics(None) == ({}, []) and clean_metrics("x")[0] == {}


def test_an_empty_token_upload_is_refused():
    with pytest.raises(InvalidUploadError, match="at least one row"):
        validate_tokens(np.zeros((0, 4), np.float32), 4, 256)
