"""Super-resolution data: degradation, datalists from phantom / npz / folders, bad files, the federation."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.degradation import degrade_bicubic
from omnifm_monai.data.federation import build_super_resolution_federation
from omnifm_monai.data.phantom import MODALITIES
from omnifm_monai.data.super_resolution import (
    SuperResolutionData,
    load_super_resolution_npz,
    load_super_resolution_split,
)

# ---- degradation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_degrade_shape_range_and_seeding(scale):
    hr = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    lr = degrade_bicubic(hr, scale, seed=1)
    assert lr.shape == (2, 3, 32 // scale, 32 // scale) and lr.dtype == np.float32
    assert lr.min() >= 0.0 and lr.max() <= 1.0
    np.testing.assert_array_equal(lr, degrade_bicubic(hr, scale, seed=1))  # same seed, same LR
    assert not np.array_equal(lr, degrade_bicubic(hr, scale, seed=2))  # the noise follows the seed


def test_degrade_without_noise_keeps_a_constant_image_and_blurs_an_edge():
    flat = np.full((1, 1, 16, 16), 0.4, dtype=np.float32)
    np.testing.assert_allclose(degrade_bicubic(flat, 2, noise_std=0.0), 0.4, atol=1e-5)
    edge = np.zeros((1, 1, 16, 16), dtype=np.float32)
    edge[..., 8:] = 1.0
    lr = degrade_bicubic(edge, 2, noise_std=0.0)[0, 0, 0]  # one row (8,)
    assert 0.05 < lr[3] < 0.5 < lr[4] < 0.95  # blurred across the edge
    assert degrade_bicubic(np.zeros((1, 1, 8, 8, 8), np.float32), 2).shape == (1, 1, 4, 4, 4)  # 3D


@pytest.mark.parametrize(
    "images, scale, match",
    [
        (np.zeros((1, 1, 10, 10)), 4, "divide"),
        (np.zeros((10, 10)), 2, "shape"),
        (np.zeros((1, 1, 8, 8)), 0, "scale"),
    ],
)
def test_degrade_rejects_bad_input(images, scale, match):
    with pytest.raises(ValueError, match=match):
        degrade_bicubic(images, scale)


# ---- datalists ------------------------------------------------------------------------------------------


def test_phantom_splits_hold_every_modality_and_pair_lr_with_hr():
    splits = {
        s: load_super_resolution_split("phantom", s, image_size=32, scale=4, num_samples=35)
        for s in ("train", "val", "test")
    }
    assert [len(v) for v in splits.values()] == [21, 7, 7]  # 60/20/20
    item = splits["train"][0]
    assert item["image"].shape == (3, 8, 8) and item["label"].shape == (3, 32, 32)
    assert item["image"].dtype == np.float32 and item["label"].dtype == np.float32
    hr = np.stack([d["label"] for d in splits["train"]])
    assert 0.0 <= hr.min() and hr.max() <= 1.0
    rgb = np.abs(hr[:, 0] - hr[:, 1]).reshape(len(hr), -1).max(axis=1) > 1e-3
    assert rgb.any() and not rgb.all()  # pathology (RGB) and gray modalities both present
    again = load_super_resolution_split(None, "train", image_size=32, scale=4, num_samples=35)
    np.testing.assert_array_equal(again[0]["image"], item["image"])  # seeded
    gray = load_super_resolution_split("", "val", image_size=32, scale=2, in_channels=1, num_samples=35)
    assert gray[0]["image"].shape == (1, 16, 16)


def test_npz_round_trip_and_lr_derived_on_load(tmp_path):
    rng = np.random.default_rng(0)
    data = SuperResolutionData(
        "site-1",
        "CT",
        {s: rng.integers(0, 256, (n, 16, 16), dtype=np.uint8) for s, n in (("train", 4), ("val", 2), ("test", 2))},
        source="phantom",
    )
    path = tmp_path / "site-1.npz"
    data.save_npz(path)
    back = load_super_resolution_npz(path)
    assert (back.name, back.modality, back.num_channels) == ("site-1", "CT", 1)
    np.testing.assert_array_equal(back.splits["val"], data.splits["val"])
    items = load_super_resolution_split(str(path), "train", image_size=16, scale=2, in_channels=3)
    assert len(items) == 4 and items[0]["image"].shape == (3, 8, 8)
    np.testing.assert_allclose(items[0]["label"][1], data.splits["train"][0] / 255.0, atol=1e-6)  # gray repeated


def test_npz_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_super_resolution_split(str(bad), "train", image_size=16, scale=2)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz"):
        load_super_resolution_npz(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        load_super_resolution_split(str(tmp_path / "missing"), "train", image_size=16, scale=2)


def _png(path, rng, size=(20, 24), rgb=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if rgb else size
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def test_png_split_folder_skips_bad_files_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for i in range(3):
        _png(tmp_path / "train" / "benign" / f"img{i}.png", rng)
    _png(tmp_path / "val" / "v.png", rng, rgb=False)
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        items = load_super_resolution_split(tmp_path, "train", image_size=16, scale=2)
    assert len(items) == 3 and items[0]["label"].shape == (3, 16, 16) and items[0]["image"].shape == (3, 8, 8)
    assert "broken.png" in caplog.text and "notes.txt" in caplog.text
    assert load_super_resolution_split(tmp_path, "val", image_size=16, scale=2)[0]["label"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="no readable image"):
        load_super_resolution_split(tmp_path, "test", image_size=16, scale=2)


def test_flat_nifti_folder_is_split_by_seed(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        volume = rng.random((24, 20, 3)).astype(np.float32) * 1000
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"case{i}.nii.gz")
    sizes = [
        len(load_super_resolution_split(tmp_path, s, image_size=16, scale=4, seed=3)) for s in ("train", "val", "test")
    ]
    assert sizes == [6, 2, 2]
    items = load_super_resolution_split(tmp_path, "test", image_size=16, scale=4, in_channels=1, seed=3)
    assert items[0]["image"].shape == (1, 4, 4) and items[0]["label"].max() <= 1.0


# ---- federation -----------------------------------------------------------------------------------------


def test_cross_modality_federation_partition():
    fed = build_super_resolution_federation("cross_modality_hard", 9, image_size=16, samples_per_client=10)
    assert fed.num_classes == 0 and all(hasattr(fed, a) for a in ("clients", "client", "summary"))
    assert [c.name for c in fed.clients] == [f"site-{i}" for i in range(1, 10)]
    assert [c.modality for c in fed.clients] == [MODALITIES[i % 7] for i in range(9)]
    site = fed.client("site-7")
    assert site.num_channels == 3 and fed.client("site-1").num_channels == 1  # pathology RGB, CT gray
    assert [site.num_samples(s) for s in ("train", "val", "test")] == [6, 2, 2]
    assert "site-7" in fed.summary() and "PATHOLOGY" in fed.summary()
    assert not np.array_equal(fed.client("site-1").splits["train"], fed.client("site-8").splits["train"])
    with pytest.raises(KeyError):
        fed.client("site-99")
    again = build_super_resolution_federation("cross_modality_hard", 9, image_size=16, samples_per_client=10)
    np.testing.assert_array_equal(again.client("site-3").splits["test"], fed.client("site-3").splits["test"])


def test_iid_federation_and_site_export(tmp_path):
    fed = build_super_resolution_federation("iid", 2, image_size=16, samples_per_client=14)
    assert all(c.modality == "+".join(MODALITIES) and c.num_channels == 3 for c in fed.clients)
    fed.client("site-2").save_npz(tmp_path / "site-2.npz")
    items = load_super_resolution_split(str(tmp_path / "site-2.npz"), "val", image_size=16, scale=2)
    assert len(items) == fed.client("site-2").num_samples("val")


@pytest.mark.parametrize(
    "args, match",
    [
        (("cross_modality_mixed", 3), "not supported"),
        (("iid", 0), "num_clients"),
    ],
)
def test_federation_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        build_super_resolution_federation(*args)
    with pytest.raises(FileNotFoundError, match="'/data/medmnist' is not a folder of image folders"):
        build_super_resolution_federation("cross_modality_hard", 2, data_dir="/data/medmnist")
