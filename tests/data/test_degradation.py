"""Tests of the one HR -> LR degradation model (``omnifm_monai.data.degradation``)."""

import numpy as np
import pytest

from omnifm_monai.data.degradation import degrade_bicubic
from omnifm_monai.data.phantom import degrade


def test_area_downsampling_without_blur_and_noise_is_the_box_mean():
    hr = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    lr = degrade_bicubic(hr, 2, blur_sigma=0.0, noise_std=0.0, downsample="area")
    np.testing.assert_allclose(lr, hr.reshape(2, 1, 4, 2, 4, 2).mean((3, 5)), atol=1e-6)


def test_phantom_degrade_is_the_model_with_area_downsampling():
    hr = np.random.default_rng(1).random((2, 1, 16, 16), dtype=np.float32)
    expected = degrade_bicubic(hr, 2, seed=3, downsample="area")
    np.testing.assert_array_equal(degrade(hr, 2, seed=3), expected)
    assert not np.array_equal(expected, degrade_bicubic(hr, 2, seed=3))  # bicubic is the SR pipeline's


def test_unknown_downsample_raises():
    with pytest.raises(ValueError, match="downsample='nearest'"):
        degrade_bicubic(np.zeros((1, 1, 4, 4), np.float32), 2, downsample="nearest")
