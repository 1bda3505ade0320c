"""Tests of the fusion federation built from a folder of co-registered volumes with ``pairs.json``.

The real-data tests read ``../shared/data/real/fusion`` (SPM population-average templates, not single
subjects) and skip where it is absent; the synthetic-folder tests write tiny NIfTI volumes into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omnifm_monai.data.federation import build_fusion_federation
from omnifm_monai.data.federation.fusion_sources import kept_slices
from omnifm_monai.data.fusion import load_fusion_npz, load_fusion_split

REPO = Path(__file__).resolve().parents[3]
REAL_FUSION = REPO / ".." / "shared" / "data" / "real" / "fusion"
needs_real = pytest.mark.skipif(not (REAL_FUSION / "pairs.json").is_file(), reason="../shared/data/real/fusion absent")
SPLITS = ("train", "val", "test")
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _volume(path: Path, shape=(12, 8, 20), *, value: float = 100.0, empty_top: int = 0, affine=AFFINE) -> None:
    """A NIfTI volume: a ramp over x (so pixels differ) times ``value``; the top ``empty_top`` slices zero."""
    data = np.broadcast_to(np.linspace(0.0, value, shape[0])[:, None, None], shape).astype(np.float32).copy()
    if empty_top:
        data[:, :, -empty_top:] = 0.0
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Two pairs sharing a fixed volume whose top 5 of 20 slices are empty (so 15 slices are kept)."""
    _volume(tmp_path / "fixed.nii.gz", empty_top=5)
    _volume(tmp_path / "mov_a.nii.gz", value=50.0)
    _volume(tmp_path / "mov_b.nii.gz", value=7.0)
    pairs = [
        {"name": "F-A", "fixed": "fixed.nii.gz", "moving": "mov_a.nii.gz", "modalities": ["F", "A"]},
        {"fixed": "fixed.nii.gz", "moving": "mov_b.nii.gz"},
    ]
    (tmp_path / "pairs.json").write_text(json.dumps({"pairs": pairs, "note": "Synthetic ramps. Not patients."}))
    return tmp_path


def _slices(fed, site: str) -> dict[str, list[int]]:
    return {s: fed.client(site).slices[s].tolist() for s in SPLITS}


def test_synthetic_folder_skips_empty_slices_and_splits_contiguous_slabs(folder, tmp_path):
    fed = build_fusion_federation("cross_modality_hard", 2, data_dir=folder, image_size=16)
    # 15 kept slices (z 0-14): train = round(0.6 * 15) = 9, val = 3, test = 3
    assert _slices(fed, "site-1") == {"train": list(range(9)), "val": [9, 10, 11], "test": [12, 13, 14]}
    assert fed.client("site-1").splits["train"].shape == (9, 2, 16, 16)
    assert fed.client("site-1").modalities == "F+A" and fed.client("site-2").modalities == "fixed+mov_b"
    assert fed.site_pairs == ("F-A", "fixed-mov_b")
    # each volume min-max scaled on its own: the moving ramps (max 50 and 7) both reach 255
    assert fed.client("site-1").splits["train"][:, 1].max() == 255 == fed.client("site-2").splits["train"][:, 1].max()
    # 12 x 8 padded to 12 x 12 (2 zero columns each side) then resized: the border columns are black
    assert fed.client("site-1").splits["train"][:, :, :, 0].max() == 0
    assert "0-8; 9-11; 12-14" in fed.summary() and "Synthetic ramps." in fed.summary()


def test_synthetic_folder_more_sites_than_pairs_split_a_pairs_slices(folder):
    fed = build_fusion_federation("cross_modality_hard", 4, data_dir=folder, image_size=16)
    one, three = _slices(fed, "site-1"), _slices(fed, "site-3")  # both hold pair F-A: z 0-7 and z 8-14
    assert one == {"train": [0, 1, 2, 3, 4], "val": [5, 6], "test": [7]}
    assert three == {"train": [8, 9, 10, 11], "val": [12], "test": [13, 14]}
    assert fed.site_pairs == ("F-A", "fixed-mov_b", "F-A", "fixed-mov_b")


def test_synthetic_folder_cap_zero_and_none(folder):
    capped = build_fusion_federation("cross_modality_hard", 2, data_dir=folder, image_size=16, samples_per_client=4)
    again = build_fusion_federation("cross_modality_hard", 2, data_dir=folder, image_size=16, samples_per_client=4)
    train = capped.client("site-1").slices["train"]
    assert len(train) == 4 and set(train) <= set(range(9)) and list(train) == sorted(train)
    np.testing.assert_array_equal(train, again.client("site-1").slices["train"])
    assert [capped.client("site-1").num_samples(s) for s in SPLITS] == [4, 3, 3]  # val/test never capped
    for cap in (None, 0):
        full = build_fusion_federation("cross_modality_hard", 2, data_dir=folder, image_size=16, samples_per_client=cap)
        assert [full.client("site-2").num_samples(s) for s in SPLITS] == [9, 3, 3]


def test_synthetic_folder_bad_pairs_are_named_in_one_line(folder, tmp_path):
    def build(path=folder, scenario="cross_modality_hard", clients=2):
        return build_fusion_federation(scenario, clients, data_dir=path, image_size=16)

    with pytest.raises(FileNotFoundError, match="not a folder"):
        build(tmp_path / "absent")
    pairs = folder / "pairs.json"
    pairs.write_text(json.dumps({"pairs": [{"name": "X", "fixed": "fixed.nii.gz"}]}))
    with pytest.raises(ValueError, match=r"pairs\.json' pairs\[0\] \('X'\) lacks \['moving'\]") as error:
        build()
    assert "\n" not in str(error.value)
    pairs.write_text(json.dumps({"pairs": [{"name": "Y", "fixed": "fixed.nii.gz", "moving": "gone.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match=r"pairs\[0\] \('Y'\) names .*gone\.nii\.gz"):
        build()
    _volume(folder / "wide.nii.gz", shape=(12, 9, 20))
    _volume(folder / "moved.nii.gz", affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    for moving in ("wide.nii.gz", "moved.nii.gz"):
        pairs.write_text(json.dumps({"pairs": [{"name": "Z", "fixed": "fixed.nii.gz", "moving": moving}]}))
        with pytest.raises(ValueError, match=rf"'Z'.*fixed\.nii\.gz.*{moving}.*shape or affine"):
            build()
    pairs.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        build()
    pairs.unlink()
    with pytest.raises(FileNotFoundError, match=r"pairs\.json' does not exist"):
        build()
    with pytest.raises(ValueError, match="scenario='iid' is not supported for a fusion folder"):
        build(scenario="iid")


def test_synthetic_folder_too_many_sites_for_the_slices(folder):
    with pytest.raises(ValueError, match="site-1 gets 3 kept slice"):  # 15 slices over 5 sites of one pair
        build_fusion_federation("cross_modality_hard", 10, data_dir=folder, image_size=16)


def test_phantom_pooled_and_zero_samples():
    fed = build_fusion_federation("cross_modality_hard", 3, image_size=16, samples_per_client=10)
    pooled = fed.pooled(16)
    assert pooled.name == "pooled" and [pooled.num_samples(s) for s in SPLITS] == [18, 6, 6]
    np.testing.assert_array_equal(pooled.splits["val"][2:4], fed.client("site-2").splits["val"])
    assert fed.pooled(32).splits["test"].shape == (6, 2, 32, 32)
    default = build_fusion_federation("iid", 1, image_size=16, samples_per_client=0)  # 0: the default 160 pairs
    assert default.client("site-1").num_samples("train") == 96


@needs_real
def test_real_templates_four_sites_one_pair_each(tmp_path):
    fed = build_fusion_federation("cross_modality_hard", 4, data_dir=REAL_FUSION, image_size=32)
    assert fed.site_pairs == ("T1-T2", "T1-PD", "T1-PET", "T1-SPECT")
    # 85 of 91 slices kept (z 0-84: the top 6 lie above the head), 51/17/17 contiguous slabs
    for site in fed.clients:
        assert {s: (z[0], z[-1], len(z)) for s, z in site.slices.items()} == {
            "train": (0, 50, 51),
            "val": (51, 67, 17),
            "test": (68, 84, 17),
        }
        assert site.splits["test"].shape == (17, 2, 32, 32)
    # the fixed channel (T1) is the same at every site; the moving one differs
    np.testing.assert_array_equal(fed.clients[0].splits["val"][:, 0], fed.clients[3].splits["val"][:, 0])
    assert not np.array_equal(fed.clients[0].splits["val"][:, 1], fed.clients[3].splits["val"][:, 1])
    assert "SPECT" in fed.client("site-4").modalities and "NOT single subjects" in fed.summary()
    assert "0-50; 51-67; 68-84" in fed.summary()
    again = build_fusion_federation("cross_modality_hard", 4, data_dir=REAL_FUSION, image_size=32)
    for a, b in zip(fed.clients, again.clients):
        for s in SPLITS:
            np.testing.assert_array_equal(a.splits[s], b.splits[s])
    path = tmp_path / "site-3.npz"
    fed.client("site-3").save_npz(path)
    items = load_fusion_split(path, "test", image_size=32)
    assert len(items) == 17 and items[0]["image"].shape == (2, 32, 32) and items[0]["image"].dtype == np.float32
    np.testing.assert_array_equal(load_fusion_npz(path).slices["test"], np.arange(68, 85))
    pooled = fed.pooled(32)
    assert [pooled.num_samples(s) for s in SPLITS] == [204, 68, 68]


@needs_real
def test_real_templates_cap_fewer_sites_and_more_sites():
    real = {"data_dir": REAL_FUSION, "image_size": 16}
    capped = build_fusion_federation("cross_modality_hard", 2, samples_per_client=5, **real)
    assert [capped.client("site-2").num_samples(s) for s in SPLITS] == [5, 17, 17]
    assert capped.site_pairs == ("T1-T2", "T1-PD") and "only the first 2 of the 4 pairs" in capped.summary()
    full = build_fusion_federation("cross_modality_hard", 2, samples_per_client=0, **real)
    assert full.client("site-1").num_samples("train") == 51
    eight = build_fusion_federation("cross_modality_hard", 8, **real)
    low, high = eight.client("site-1").slices, eight.client("site-5").slices  # both T1-T2: z 0-42 and 43-84
    assert (low["train"][0], low["test"][-1], high["train"][0], high["test"][-1]) == (0, 42, 43, 84)


@needs_real
def test_real_kept_slice_rule_on_the_t1_template():
    from omnifm_monai.data.federation.fusion_sources import _read_scaled

    fixed, affine = _read_scaled(REAL_FUSION / "avg152T1.nii.gz")
    assert fixed.shape == (91, 109, 91) and np.allclose(np.abs(np.diag(affine))[:3], 2.0)
    assert kept_slices(fixed).tolist() == list(range(85))
