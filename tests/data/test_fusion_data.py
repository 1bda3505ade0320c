"""Fusion datalists: phantom, site .npz, PNG and NIfTI pair folders, bad pairs skipped, federation."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.federation import build_fusion_federation
from omnifm_monai.data.fusion import (
    FUSION_PAIRS,
    FusionData,
    fusion_inference_datalist,
    load_fusion_npz,
    load_fusion_split,
    read_fusion_source,
)
from omnifm_monai.tasks.base import TaskFederation


def _png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_phantom_splits_are_60_20_20_gray_pairs_and_seeded():
    items = {s: load_fusion_split("", s, image_size=16, num_samples=20, seed=1) for s in ("train", "val", "test")}
    assert [len(v) for v in items.values()] == [12, 4, 4]
    first = items["train"][0]
    assert first["image"].shape == (2, 16, 16) and first["image"].dtype == np.float32
    assert first["label"] is first["image"]  # the loss reads the sources from the label
    assert 0.0 <= first["image"].min() and first["image"].max() <= 1.0
    again = load_fusion_split("phantom", "train", image_size=16, num_samples=20, seed=1)
    np.testing.assert_array_equal(again[0]["image"], first["image"])
    other = load_fusion_split(None, "train", image_size=16, num_samples=20, seed=2)
    assert not np.array_equal(other[0]["image"], first["image"])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        s: rng.integers(0, 256, (n, 2, 20, 20), dtype=np.uint8) for s, n in (("train", 3), ("val", 1), ("test", 2))
    }
    FusionData("site-1", "MR-T1+PET", splits, source="phantom").save_npz(tmp_path / "site.npz")
    data = load_fusion_npz(tmp_path / "site.npz")
    assert (data.name, data.modalities, data.source) == ("site-1", "MR-T1+PET", "phantom")
    np.testing.assert_array_equal(data.splits["test"], splits["test"])
    items = load_fusion_split(str(tmp_path / "site.npz"), "test", image_size=20)
    assert len(items) == 2
    np.testing.assert_allclose(items[1]["image"], splits["test"][1] / 255.0, atol=1e-6)
    assert load_fusion_split(tmp_path / "site.npz", "train", image_size=16)[0]["image"].shape == (2, 16, 16)


def test_bad_npz_and_paths_are_named(tmp_path):
    (tmp_path / "other.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="other.npz"):
        load_fusion_split(tmp_path / "other.npz", "train", image_size=16)
    np.savez(tmp_path / "images.npz", train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="not a fusion archive"):
        load_fusion_npz(tmp_path / "images.npz")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_fusion_split(tmp_path / "missing", "train", image_size=16)
    with pytest.raises(ValueError, match="split"):
        load_fusion_split("", "holdout", image_size=16)
    with pytest.raises(ValueError, match="FusionData|uint8"):
        FusionData("x", "a+b", {"train": np.zeros((2, 3, 8, 8), np.uint8)})


def test_png_pair_folder_skips_bad_and_mismatched_pairs_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for case in ("c1", "c2"):
            _png(tmp_path / split / case / "a.png", rng.integers(0, 256, (24, 32), dtype=np.uint8))
            _png(tmp_path / split / case / "b.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    _png(tmp_path / "train" / "shapes" / "a.png", np.zeros((24, 32), np.uint8))
    _png(tmp_path / "train" / "shapes" / "b.png", np.zeros((20, 32), np.uint8))
    (tmp_path / "train" / "broken").mkdir()
    (tmp_path / "train" / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _png(tmp_path / "train" / "broken" / "b.png", np.zeros((24, 32), np.uint8))
    (tmp_path / "train" / "lonely").mkdir()
    _png(tmp_path / "train" / "lonely" / "a.png", np.zeros((24, 32), np.uint8))
    with caplog.at_level(logging.WARNING, logger="omnifm_monai.data.fusion"):
        items = load_fusion_split(tmp_path, "train", image_size=16)
    assert len(items) == 2
    assert items[0]["image"].shape == (2, 16, 16)
    text = caplog.text
    assert "shapes" in text and "differ" in text
    assert str(tmp_path / "train" / "broken" / "a.png") in text
    assert "lonely" in text
    # the centre 24 x 24 crop of the first source, area-resized to 16 x 16, in [0, 1]
    a = np.asarray(Image.open(tmp_path / "train" / "c1" / "a.png"), dtype=np.float32) / 255.0
    assert items[0]["image"][0].mean() == pytest.approx(a[:, 4:28].mean(), abs=1e-2)


def test_nifti_pairs_without_split_folders_use_a_seeded_split(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(10):
        case = tmp_path / f"case{k:02d}"
        case.mkdir()
        volume = rng.random((20, 20, 5)).astype(np.float32) * 100
        nib.save(nib.Nifti1Image(volume, np.eye(4)), case / "a.nii.gz")
        nib.save(nib.Nifti1Image(volume[..., 2] * 2, np.eye(4)), case / "b.nii")
    counts = [len(load_fusion_split(tmp_path, s, image_size=16, seed=0)) for s in ("train", "val", "test")]
    assert counts == [6, 2, 2]
    item = load_fusion_split(tmp_path, "test", image_size=20)[0]
    np.testing.assert_allclose(item["image"][0], item["image"][1], atol=1e-5)  # middle slice, min-max scaled
    image, affine = read_fusion_source(tmp_path / "case00" / "a.nii.gz")
    assert image.shape == (20, 20) and affine[2, 3] == 2.0  # moved to the middle slice


def test_folder_without_pairs_says_so(tmp_path):
    (tmp_path / "train" / "c1").mkdir(parents=True)
    with pytest.raises(ValueError, match="no readable source pair"):
        load_fusion_split(tmp_path, "train", image_size=16)


def test_inference_datalist_rejects_mismatched_sources(tmp_path):
    _png(tmp_path / "a.png", np.zeros((20, 30), np.uint8))
    _png(tmp_path / "b.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        fusion_inference_datalist(tmp_path / "a.png", tmp_path / "b.png", image_size=16)
    (tmp_path / "c.txt").write_text("text")
    with pytest.raises(ValueError, match="c.txt"):
        read_fusion_source(tmp_path / "c.txt")


def test_federation_cross_modality_and_iid(tmp_path):
    fed = build_fusion_federation("cross_modality_hard", 5, image_size=16, samples_per_client=10)
    assert all(hasattr(fed, k) for k in TaskFederation.__annotations__)
    assert fed.num_classes == 0 and [c.name for c in fed.clients] == [f"site-{i}" for i in range(1, 6)]
    assert [c.modalities for c in fed.clients] == ["+".join(p) for p in FUSION_PAIRS] + ["+".join(FUSION_PAIRS[0])]
    assert [fed.client("site-2").num_samples(s) for s in ("train", "val", "test")] == [6, 2, 2]
    assert fed.client("site-1").splits["train"].shape[1:] == (2, 16, 16)
    assert not np.array_equal(fed.client("site-1").splits["train"], fed.client("site-5").splits["train"])
    summary = fed.summary()
    assert "| site-3" in summary and "MR-T1+MR-T2" in summary and "6/2/2" in summary
    fed.client("site-2").save_npz(tmp_path / "s2.npz")
    assert len(load_fusion_split(tmp_path / "s2.npz", "val", image_size=16)) == 2
    iid = build_fusion_federation("iid", 2, image_size=16, samples_per_client=8, seed=3)
    assert iid.client("site-1").modalities.count("+") == len(FUSION_PAIRS)
    again = build_fusion_federation("iid", 2, image_size=16, samples_per_client=8, seed=3)
    np.testing.assert_array_equal(again.client("site-2").splits["test"], iid.client("site-2").splits["test"])
    with pytest.raises(KeyError):
        fed.client("site-9")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scenario": "dirichlet"}, "scenario"),
        ({"num_clients": 0}, "num_clients"),
        ({"samples_per_client": 3}, "samples_per_client"),
        ({"data_dir": "/data/pairs", "scenario": "cross_modality_hard"}, "not a folder"),
    ],
)
def test_federation_bad_arguments(kwargs, match):
    args = {"scenario": "iid", "num_clients": 2, "image_size": 16, **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        build_fusion_federation(args.pop("scenario"), args.pop("num_clients"), **args)
