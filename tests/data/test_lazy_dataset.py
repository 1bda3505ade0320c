"""Tests of lazy loading: file datasets (no cache, memory, disk) give the eager loader's images and labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose, EnsureTyped, RandFlipd
from PIL import Image

import omnifm_monai.data.lazy_dataset as lazy_dataset_module
from omnifm_monai.data.classification import classification_dataset, classification_files, load_classification_split
from omnifm_monai.data.lazy_dataset import LoadImageFiled, file_dataset
from omnifm_monai.tasks.base import dataset_images, stack_images


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """``<root>/<split>/<class>/`` with gray and RGB PNGs of different sizes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2), ("test", 2)):
        for name in ("a", "b"):
            (tmp_path / "site" / split / name).mkdir(parents=True)
            for i in range(count):
                shape = (20 + i, 24) if i % 2 else (18, 18, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
                    tmp_path / "site" / split / name / f"{i}.png"
                )
    return tmp_path / "site"


def _same(dataset, eager: list[dict]) -> None:
    assert len(dataset) == len(eager)
    for i, item in enumerate(eager):
        np.testing.assert_allclose(np.asarray(dataset[i]["image"]), item["image"], atol=1e-6)
        assert int(dataset[i]["label"]) == int(item["label"])


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_lazy_folder_dataset_gives_the_eager_images(folder, tmp_path, cache):
    eager = load_classification_split(folder, "train", image_size=16, in_channels=3)
    lazy = classification_dataset(folder, "train", cache=cache, cache_dir=tmp_path / "cache", image_size=16)
    assert isinstance(lazy.data[0]["image"], str)  # items are paths
    _same(lazy, eager)


def test_lazy_csv_dataset_gives_the_eager_images(folder, tmp_path):
    files = sorted((folder / "train").rglob("*.png"))
    with (tmp_path / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(
            [["image", "label"], *[[p.relative_to(tmp_path).as_posix(), p.parent.name] for p in files]]
        )
    eager = load_classification_split(tmp_path / "labels.csv", "test", image_size=16, in_channels=1, seed=2)
    lazy = classification_dataset(tmp_path / "labels.csv", "test", cache="none", image_size=16, in_channels=1, seed=2)
    _same(lazy, eager)


def test_disk_cache_is_reused_and_keyed_by_size(folder, tmp_path, monkeypatch):
    # Prepare: one pass fills the cache
    items = classification_files(folder, "val")
    first = file_dataset(items, None, image_size=16, in_channels=3, cache="disk", cache_dir=tmp_path / "cache")
    images = [np.asarray(first[i]["image"]) for i in range(len(first))]
    assert len(list((tmp_path / "cache" / "images_16px_3ch").glob("*.pt"))) == len(items)

    def no_reading(*args, **kwargs):
        raise AssertionError("an image file was read although it is in the disk cache")

    # Execute: a new dataset (a later run) over the same cache, file reading disabled
    monkeypatch.setattr(lazy_dataset_module, "load_image_file", no_reading)
    again = file_dataset(items, None, image_size=16, in_channels=3, cache="disk", cache_dir=tmp_path / "cache")
    # Assert
    for i, image in enumerate(images):
        np.testing.assert_array_equal(np.asarray(again[i]["image"]), image)
    other_size = file_dataset(items, None, image_size=8, in_channels=3, cache="disk", cache_dir=tmp_path / "cache")
    with pytest.raises(RuntimeError):  # another size is another cache folder: it has to read the files
        other_size[0]


def test_dataset_images_are_the_unaugmented_images(folder):
    flips = Compose([EnsureTyped(keys=["image", "label"]), RandFlipd(keys="image", prob=1.0, spatial_axis=0)])
    eager = classification_dataset(folder, "train", flips, image_size=16)
    lazy = classification_dataset(folder, "train", flips, cache="memory", image_size=16)
    expected = stack_images(load_classification_split(folder, "train", image_size=16))  # (N, 3, 16, 16)
    np.testing.assert_allclose(dataset_images(lazy).numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(dataset_images(eager).numpy(), expected.numpy())
    assert not np.allclose(np.asarray(lazy[0]["image"]), expected[0].numpy())  # the dataset itself flips


def test_phantom_and_bad_options(tmp_path):
    phantom = classification_dataset("", "train", cache="disk", cache_dir=tmp_path, image_size=16, num_samples=4)
    assert isinstance(phantom.data[0]["image"], np.ndarray)  # no files: always eager
    with pytest.raises(ValueError, match="dataset_cache|Unsupported option"):
        classification_dataset("", "train", cache="ram")
    with pytest.raises(ValueError, match="cache_dir"):
        file_dataset([], None, image_size=16, in_channels=3, cache="disk")


def test_unreadable_file_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    with pytest.raises(ValueError, match="broken.png"):
        LoadImageFiled("image", 16, 3)({"image": str(tmp_path / "broken.png"), "label": 0})
