"""Tests of the real-data super-resolution federation: HR tiles of image folders, one source per site."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.federation import build_super_resolution_federation
from omnifm_monai.data.federation.super_resolution_sources import image_tiles
from omnifm_monai.data.super_resolution import load_super_resolution_split

REPO = Path(__file__).resolve().parents[3]
REAL_SR = REPO / ".." / "shared" / "data" / "real" / "super_resolution"
needs_real = pytest.mark.skipif(not REAL_SR.is_dir(), reason="../shared/data/real/super_resolution is absent")


def _png16(path: Path, values: np.ndarray) -> None:
    """A 16-bit grayscale PNG of ``values`` (H, W) uint16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


def _textured(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Foreground everywhere: values in [20000, 65535] with one 0 (min-max maps it exactly to 0..65535)."""
    values = rng.integers(20000, 65536, shape).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    return values


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """aa: 2 patients x 2 images (48x32); bb: 2 images (40x32); cc: 5 images (40x16), each its own group."""
    rng = np.random.default_rng(0)
    root = tmp_path / "real"
    meta = []
    for k in range(4):
        _png16(root / "aa" / f"view{k}.png", _textured(rng, (48, 32)))
        meta.append({"file": f"view{k}.png", "notes": f"CBIS-DDSM Mass-Test_P_0000{1 + k // 2}_LEFT_CC"})
    (root / "aa" / "metadata.json").write_text(json.dumps(meta))
    (root / "aa" / "README.md").write_text("not an image")
    for k in range(2):
        _png16(root / "bb" / f"film{k}.png", _textured(rng, (40, 32)))
    for k in range(5):
        _png16(root / "cc" / f"slice{k}.png", _textured(rng, (40, 16)))
    return root


def test_synthetic_folder_split_rules_and_counts(folder):
    fed = build_super_resolution_federation("cross_modality_hard", 3, data_dir=folder, image_size=8)
    assert [(c.name, c.modality) for c in fed.clients] == [("site-1", "aa"), ("site-2", "bb"), ("site-3", "cc")]
    aa, bb, cc = fed.layouts
    # aa: one patient trains, the other patient's two views are cut into val and test
    train_patient = {name[:5] for name in aa["images"]["train"]}
    assert len(aa["images"]["train"]) == 2 and aa["images"]["val"] != aa["images"]["test"]
    assert {"view0", "view1"} in (
        {n[:5] for n in aa["images"]["train"]},
        {n[:5] for n in aa["images"]["val"] + aa["images"]["test"]},
    )
    assert not train_patient & {n[:5] for n in aa["images"]["val"] + aa["images"]["test"]}
    assert [fed.clients[0].num_samples(s) for s in ("train", "val", "test")] == [48, 24, 24]  # 24 tiles per image
    # bb: two images -> row bands [0, 24), [24, 32), [32, 40): 3, 1, 1 tile rows of 4 tiles, per image
    assert bb["rule"].startswith("by region") and bb["images"]["train"] == ["film0.png", "film1.png"]
    assert [fed.clients[1].num_samples(s) for s in ("train", "val", "test")] == [24, 8, 8]
    # cc: five own groups -> 3/1/1 whole images, 10 tiles each
    assert cc["rule"] == "by image" and [len(cc["images"][s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert not set(cc["images"]["train"]) & set(cc["images"]["test"])
    assert fed.clients[2].splits["train"].shape == (30, 8, 8) and fed.clients[2].splits["train"].dtype == np.uint16
    assert "| site-2 | bb " in fed.summary() and "2/2/2 " in fed.summary()


def test_synthetic_folder_keeps_16_bits_and_the_loader_reads_them(folder, tmp_path):
    fed = build_super_resolution_federation("cross_modality_hard", 3, data_dir=folder, image_size=8)
    site = fed.client("site-2")
    original = np.asarray(Image.open(folder / "bb" / "film0.png"), dtype=np.uint16)  # min 0, max 65535
    np.testing.assert_array_equal(site.splits["train"][0], original[:8, :8])  # first tile, exact 16-bit values
    site.save_npz(tmp_path / "site-2.npz")
    items = load_super_resolution_split(tmp_path / "site-2.npz", "train", image_size=8, in_channels=1, scale=2)
    assert len(items) == 24 and items[0]["image"].shape == (1, 4, 4)
    np.testing.assert_allclose(items[0]["label"][0], original[:8, :8] / 65535.0, atol=1e-7)


def test_synthetic_folder_more_sites_cap_zero_pooled_and_determinism(folder):
    six = build_super_resolution_federation("cross_modality_hard", 6, data_dir=folder, image_size=8, seed=3)
    assert [c.modality for c in six.clients] == ["aa", "bb", "cc"] * 2
    aa_sites = [set(sum(lay["images"].values(), [])) for lay in (six.layouts[0], six.layouts[3])]
    assert aa_sites[0] in ({"view0.png", "view1.png"}, {"view2.png", "view3.png"}) and not aa_sites[0] & aa_sites[1]
    again = build_super_resolution_federation("cross_modality_hard", 6, data_dir=folder, image_size=8, seed=3)
    for a, b in zip(six.clients, again.clients):
        assert all(np.array_equal(a.splits[s], b.splits[s]) for s in a.splits)
    full = build_super_resolution_federation(
        "cross_modality_hard", 3, data_dir=folder, image_size=8, samples_per_client=0
    )
    capped = build_super_resolution_federation(
        "cross_modality_hard", 3, data_dir=folder, image_size=8, samples_per_client=5
    )
    assert [c.num_samples("train") for c in capped.clients] == [5, 5, 5]
    assert all(np.array_equal(a.splits["test"], b.splits["test"]) for a, b in zip(full.clients, capped.clients))
    pooled = full.pooled(8)
    assert pooled.name == "pooled" and pooled.num_samples("val") == sum(c.num_samples("val") for c in full.clients)
    two = build_super_resolution_federation("cross_modality_hard", 2, data_dir=folder, image_size=8)
    assert "first 2 of 3 sources" in two.summary()


def test_image_tiles_skip_background():
    pixels = np.zeros((1, 32, 32), dtype=np.float32)
    pixels[:, 16:] = 0.5  # bottom half foreground
    assert image_tiles(pixels, 16, 16).shape == (2, 1, 16, 16)
    assert image_tiles(pixels, 16, 8).shape == (6, 1, 16, 16)  # tile row 0 is background; rows 8 and 16 kept


def test_bad_folders_and_arguments(folder, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty' holds no folder of"):
        build_super_resolution_federation("cross_modality_hard", 2, data_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="aa' has 2 patient/image group\\(s\\); cannot split it over 3 sites"):
        build_super_resolution_federation("cross_modality_hard", 9, data_dir=folder, image_size=8)
    with pytest.raises(ValueError, match="scenario='iid' is not supported"):
        build_super_resolution_federation("iid", 2, data_dir=folder, image_size=8)


def test_eight_bit_sources_stay_uint8_and_phantom_takes_zero(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(3):
        Image.fromarray(rng.integers(30, 256, (16, 16), dtype=np.uint8)).save(tmp_path / f"x{k}.png")
    fed = build_super_resolution_federation("cross_modality_hard", 1, data_dir=tmp_path, image_size=8)
    assert fed.clients[0].splits["train"].dtype == np.uint8 and fed.clients[0].num_samples("train") == 4
    zero = build_super_resolution_federation("cross_modality_hard", 2, image_size=16, samples_per_client=0)
    default = build_super_resolution_federation("cross_modality_hard", 2, image_size=16)
    assert np.array_equal(zero.clients[1].splits["train"], default.clients[1].splits["train"])
    assert zero.pooled(16).num_samples("train") == 2 * default.clients[0].num_samples("train")


# ---- the shared real data (a few files of each modality, linked into tmp) ------------------------------

REAL_FILES = {
    "ct": ["ct_head_693.png", *(f"ct_invesalius_cranium_s{k:03d}.png" for k in (40, 48, 56))],
    "mammography": [
        "metadata.json", "mg_sfm_benign_0_lcc_1-130.png", "mg_sfm_benign_0_rcc_1-132.png",
        "mg_sfm_malign_0_lcc_1-280.png", "mg_sfm_malign_0_rcc_1-282.png",
    ],
    "mr": [f"mr_colin27_ch2better_z{z}.png" for z in (120, 128, 136, 144)],
    "radiography": ["cr_chest_RG1.png", "cr_leg_RG3.png"],
}  # fmt: skip


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real_sr")
    for modality, names in REAL_FILES.items():
        (root / modality).mkdir()
        for name in names:
            (root / modality / name).symlink_to((REAL_SR / modality / name).resolve())
    return root


@pytest.fixture(scope="module")
def real(real_dir):
    return build_super_resolution_federation("cross_modality_hard", 4, data_dir=real_dir, image_size=64)


@needs_real
def test_real_four_sites_follow_the_split_rules(real):
    assert [c.modality for c in real.clients] == ["ct", "mammography", "mr", "radiography"]
    ct, mammo, mr, radio = real.layouts
    for layout in (ct, mr):  # four own groups -> 2/1/1 whole images, none in two splits
        train, val, test = (set(layout["images"][s]) for s in ("train", "val", "test"))
        assert [len(train), len(val), len(test)] == [2, 1, 1] and not (train & val or train & test or val & test)
    patients = {s: {n.split("_0_")[0] for n in mammo["images"][s]} for s in ("train", "val", "test")}
    assert len(patients["train"]) == 1 and patients["val"] == patients["test"] != patients["train"]
    assert radio["rule"].startswith("by region") and radio["images"]["train"] == radio["images"]["test"]
    for client in real.clients:
        assert all(x.dtype == np.uint16 and x.shape[1:] == (64, 64) and len(x) for x in client.splits.values())


@needs_real
def test_real_build_is_deterministic_and_zero_means_every_tile(real, real_dir):
    zero = build_super_resolution_federation(
        "cross_modality_hard", 4, data_dir=real_dir, image_size=64, samples_per_client=0
    )
    for a, b in zip(real.clients, zero.clients):
        assert all(np.array_equal(a.splits[s], b.splits[s]) for s in a.splits)


@needs_real
def test_real_cap_pooled_and_loader(real, real_dir, tmp_path):
    capped = build_super_resolution_federation(
        "cross_modality_hard", 4, data_dir=real_dir, image_size=64, samples_per_client=10
    )
    assert [c.num_samples("train") for c in capped.clients] == [10] * 4
    assert [c.num_samples("val") for c in capped.clients] == [c.num_samples("val") for c in real.clients]
    assert real.pooled(64).num_samples("test") == sum(c.num_samples("test") for c in real.clients)
    real.client("site-4").save_npz(tmp_path / "site-4.npz")
    items = load_super_resolution_split(tmp_path / "site-4.npz", "test", image_size=64, in_channels=3, scale=2)
    assert len(items) == real.client("site-4").num_samples("test") and items[0]["image"].shape == (3, 32, 32)
    np.testing.assert_allclose(items[0]["label"][2], real.client("site-4").splits["test"][0] / 65535.0, atol=1e-7)
    with pytest.raises(FileNotFoundError, match="super_resolution/missing' is not a folder"):
        build_super_resolution_federation("cross_modality_hard", 4, data_dir=REAL_SR / "missing")
