"""Tests of the shared image helpers (``omnifm_monai.data.image_io``)."""

import numpy as np
import pytest

from omnifm_monai.data.image_io import (
    check_image_args,
    fix_channels,
    from_uint8,
    resize_images,
    resize_masks,
    square_crop,
    to_uint8,
)


def test_uint8_round_trip_in_the_medmnist_layout():
    # Prepare
    gray = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    rgb = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    # Execute
    gray_u8, rgb_u8 = to_uint8(gray), to_uint8(rgb)
    # Assert
    assert gray_u8.shape == (3, 8, 8) and rgb_u8.shape == (2, 8, 8, 3) and rgb_u8.dtype == np.uint8
    assert rgb_u8.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(from_uint8(gray_u8), gray, atol=0.5 / 255 + 1e-7)
    np.testing.assert_allclose(from_uint8(rgb_u8), rgb, atol=0.5 / 255 + 1e-7)


def test_to_uint8_rounds_half_to_even_clips_and_keeps_channels_first_on_request():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0], dtype=np.float64).reshape(1, 1, 1, 6)
    assert to_uint8(x, channels_last=False).ravel().tolist() == [0, 0, 0, 2, 255, 255]
    assert to_uint8(np.zeros((2, 2, 4, 4)), channels_last=False).shape == (2, 2, 4, 4)


def test_fix_channels_drops_alpha_of_files_only():
    rgba = np.ones((1, 4, 2, 2), np.float32)
    assert fix_channels(rgba, 3).shape == (1, 3, 2, 2)
    assert fix_channels(np.ones((1, 2, 2, 2), np.float32), 3).shape == (1, 3, 2, 2)  # gray + alpha -> gray -> RGB
    assert fix_channels(np.ones((1, 3, 2, 2), np.float32), 1).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="case-7: images have 4 channels"):
        fix_channels(rgba, 3, "case-7")  # a volume's 4 channels are sequences, not alpha


def test_resize_images_and_masks():
    images = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    assert resize_images(images, 8) is images
    assert resize_images(images, 4).shape == (2, 1, 4, 4)
    np.testing.assert_allclose(resize_images(images, 4), images.reshape(2, 1, 4, 2, 4, 2).mean((3, 5)), atol=1e-6)
    assert resize_images(np.zeros((1, 2, 4, 4, 4), np.float32), (8, 8, 8)).shape == (1, 2, 8, 8, 8)
    masks = np.arange(16).reshape(1, 4, 4)
    assert resize_masks(masks, (8, 8)).dtype == np.int64
    assert set(np.unique(resize_masks(masks, (8, 8)))) == set(range(16))


def test_square_crop_and_argument_checks():
    assert square_crop(np.zeros((2, 6, 4))).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="image_size=0"):
        check_image_args(0, 3)
    with pytest.raises(ValueError, match="in_channels=2"):
        check_image_args(8, 2)
