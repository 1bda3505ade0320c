"""Tests of the MedMNIST-v2 .npz reader on small files written in the official layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from omnifm_monai.data.medmnist import ImageClassificationData, load_medmnist

SIZES = {"train": 12, "val": 4, "test": 6}


def write_medmnist(path: Path, *, size: int = 28, rgb: bool = False, num_classes: int = 3, seed: int = 0) -> Path:
    """Write a small archive exactly like an official MedMNIST file (uint8 images, (N, 1) uint8 labels)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8).reshape(n, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def test_gray_28_by_path(tmp_path):
    # Prepare
    file = write_medmnist(tmp_path / "mystery.npz")
    # Execute
    data = load_medmnist(file)
    # Assert
    assert data.name == "mystery"
    assert data.modality == "UNKNOWN"
    assert data.label_space == (0, 1, 2)
    assert data.class_names == ("class_0", "class_1", "class_2")
    assert data.num_channels == 1
    for split, n in SIZES.items():
        images, labels = data.splits[split]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(labels, np.arange(n) % 3)


def test_rgb_28_by_flag_uses_known_tables(tmp_path):
    write_medmnist(tmp_path / "retinamnist.npz", rgb=True, num_classes=5)
    data = load_medmnist("retinamnist", root=str(tmp_path))
    assert data.modality == "FUNDUS"
    assert data.num_channels == 3
    assert data.splits["train"][0].shape == (12, 28, 28, 3)
    assert data.class_names == ("grade 0", "grade 1", "grade 2", "grade 3", "grade 4")


def test_size_64_by_flag_and_missing_size(tmp_path):
    write_medmnist(tmp_path / "breastmnist_64.npz", size=64, num_classes=2)
    data = load_medmnist("breastmnist", root=str(tmp_path), size=64)
    assert data.splits["val"][0].shape == (4, 64, 64)
    assert data.modality == "US"
    assert data.class_names == ("malignant", "normal/benign")
    with pytest.raises(FileNotFoundError, match="breastmnist.npz"):
        load_medmnist("breastmnist", root=str(tmp_path), size=28)
    with pytest.raises(ValueError, match="size"):
        load_medmnist("breastmnist", root=str(tmp_path), size=32)


def test_arbitrary_file_name_and_modality_argument(tmp_path):
    file = write_medmnist(tmp_path / "exports" / "hospital_b_2024.npz", rgb=True)
    data = load_medmnist(file, modality="PATHOLOGY")
    assert data.modality == "PATHOLOGY"
    assert data.source == "hospital_b_2024.npz"


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_medmnist(tmp_path / "nothere.npz")


@pytest.mark.skipif(importlib.util.find_spec("medmnist") is not None, reason="medmnist installed: would download")
def test_download_without_package_says_how(tmp_path):
    with pytest.raises(ImportError, match="pip install medmnist"):
        load_medmnist("dermamnist", root=str(tmp_path), download=True)


def test_label_offset(tmp_path):
    file = write_medmnist(tmp_path / "pneumoniamnist.npz", num_classes=2)
    data = load_medmnist(file, label_offset=5)
    assert data.label_space == (5, 6)
    assert data.class_names == ("pneumoniamnist:normal", "pneumoniamnist:pneumonia")
    assert set(np.unique(data.splits["train"][1])) == {5, 6}


def test_missing_key_names_key_and_file(tmp_path):
    file = write_medmnist(tmp_path / "x.npz")
    arrays = dict(np.load(file))
    del arrays["val_labels"]
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match=r"x\.npz.*val_labels"):
        load_medmnist(file)


def test_multi_label_is_refused(tmp_path):
    file = write_medmnist(tmp_path / "chest_like.npz")
    arrays = dict(np.load(file))
    for split, n in SIZES.items():
        arrays[f"{split}_labels"] = np.zeros((n, 14), dtype=np.uint8)
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match="multi-label"):
        load_medmnist(file)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train_images", np.zeros((12, 28, 28), np.float32), "uint8"),
        ("train_images", np.zeros((12, 28, 28, 4), np.uint8), r"\(N, S, S, 3\)"),
        ("train_labels", np.zeros((11, 1), np.uint8), "same N"),
    ],
)
def test_bad_arrays(tmp_path, key, value, message):
    file = write_medmnist(tmp_path / "bad.npz")
    arrays = dict(np.load(file))
    arrays[key] = value
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match=message):
        load_medmnist(file)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "npy"])
def test_corrupt_file_names_it(tmp_path, kind):
    file = tmp_path / "broken.npz"
    if kind == "garbage":
        file.write_bytes(b"this is not a zip archive" * 10)
    elif kind == "truncated":
        write_medmnist(file)
        file.write_bytes(file.read_bytes()[:300])
    else:
        with open(file, "wb") as f:
            np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="broken.npz"):
        load_medmnist(file)


def test_save_npz_round_trip(tmp_path):
    # Prepare: a site-like data set in a global label space
    original = load_medmnist(write_medmnist(tmp_path / "breastmnist.npz", num_classes=2), label_offset=3)
    original = ImageClassificationData(
        name="site-2",
        modality=original.modality,
        class_names=original.class_names,
        label_space=original.label_space,
        splits=original.splits,
        source=original.source,
    )
    # Execute
    original.save_npz(tmp_path / "out" / "site-2.npz")
    loaded = load_medmnist(tmp_path / "out" / "site-2.npz")
    # Assert: official keys and layout, extra keys, same content
    with np.load(tmp_path / "out" / "site-2.npz") as archive:
        assert archive["train_labels"].shape == (12, 1)
        assert archive["train_images"].dtype == np.uint8
    assert loaded.name == "site-2"
    assert loaded.modality == "US"
    assert loaded.label_space == (3, 4)
    assert loaded.class_names == ("breastmnist:malignant", "breastmnist:normal/benign")
    assert loaded.source == "breastmnist.npz"
    for split in SIZES:
        np.testing.assert_array_equal(loaded.splits[split][0], original.splits[split][0])
        np.testing.assert_array_equal(loaded.splits[split][1], original.splits[split][1])


def test_data_set_refuses_labels_outside_label_space():
    images = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="label_space"):
        ImageClassificationData("x", "CT", ("a", "b"), (0, 1), {"train": (images, np.array([0, 2]))})
    with pytest.raises(ValueError, match="one name per label"):
        ImageClassificationData("x", "CT", ("a",), (0, 1), {"train": (images, np.array([0, 1]))})
