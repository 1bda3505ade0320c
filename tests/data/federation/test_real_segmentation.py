"""Tests of the real segmentation federation (MSD folders -> sites of 2D slices): split rules, one label space,
spacing in the site .npz, the cap, pooled(), determinism and errors; on tiny NIfTI folders and the shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.data.federation import build_segmentation_federation
from omnifm_monai.data.segmentation import load_segmentation_npz, load_segmentation_split
from omnifm_monai.tasks.segmentation import SegmentationTask

REPO = Path(__file__).resolve().parents[3]
REAL = REPO / ".." / "shared" / "data" / "real" / "segmentation"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is absent")
SIZE = 32
SPLITS = ("train", "val", "test")


def _write_msd(root: Path, labels: dict[str, str], origins_x: list[float], shape=(16, 16, 10), z0=None) -> Path:
    """An MSD folder of volumes ``case{i}`` (2 x 2 x 3 mm, RAS); slice k has intensity k, foreground in z 2..7."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i, x0 in enumerate(origins_x):
        affine = np.diag([2.0, 2.0, 3.0, 1.0])
        affine[:3, 3] = [x0, 0.0, 0.0 if z0 is None else z0[i]]
        image = np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape).copy()  # slice k: value k
        label = np.zeros(shape, dtype=np.uint8)
        label[4:12, 4:12, 2:8] = 1
        for kind, array in (("images", image), ("labels", label)):
            nib.save(nib.Nifti1Image(array, affine), root / f"{kind}Tr" / f"case{i}.nii.gz")
        training.append({"image": f"./imagesTr/case{i}.nii.gz", "label": f"./labelsTr/case{i}.nii.gz"})
    spec = {"name": root.name, "modality": {"0": "CT"}, "labels": labels, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """``a_ct`` (4 volumes, tumour), ``b_mr`` (2 volumes, lesion; the second a sub-volume of the first scan),
    ``c_organs`` (1 volume, 2 organ labels)."""
    root = tmp_path_factory.mktemp("msd")
    _write_msd(root / "a_ct", {"0": "background", "1": "tumour"}, [0.0, 100.0, 200.0, 300.0])
    _write_msd(root / "b_mr", {"0": "background", "1": "Lesion"}, [0.0, 0.0], z0=[0.0, 15.0])
    _write_msd(root / "c_organs", {"0": "background", "1": "liver", "2": "spleen"}, [0.0])
    return root


def _build(data_dir, num_clients, **kw):
    return build_segmentation_federation("cross_modality_hard", num_clients, data_dir=data_dir, image_size=SIZE, **kw)


def _counts(site) -> list[int]:
    return [site.num_samples(s) for s in SPLITS]


def test_volume_split_of_a_site_with_four_volumes(synthetic):
    # Prepare: 4 volumes, each 6 foreground slices + ceil(0.25 * 6) = 2 empty ones = 8 kept slices
    # Execute
    (site,) = _build(synthetic / "a_ct", 1).clients
    # Assert: whole volumes 2/1/1 (rounded 60/20/20 of 4), disjoint, every one used once
    held = [site.cases[s] for s in SPLITS]
    assert [len(h) for h in held] == [2, 1, 1]
    assert sorted(sum(held, ())) == ["case0", "case1", "case2", "case3"]
    assert _counts(site) == [16, 8, 8]
    assert site.splits["train"][0].shape == (16, 1, SIZE, SIZE) and site.splits["train"][0].dtype == np.uint8
    assert site.splits["train"][1].shape == (16, SIZE, SIZE)
    np.testing.assert_allclose(site.spacing["test"], np.full((8, 2), 2.0 * 16 / SIZE))  # 2 mm x 16 px -> 32 px
    assert (site.source, site.modality, site.class_names) == ("a_ct", "CT", ("background", "lesion"))


def test_slab_split_of_sites_with_two_volumes(synthetic):
    # Execute: 2 sites share a_ct's 4 volumes in sorted order, 2 each -> slab split
    fed = _build(synthetic / "a_ct", 2)
    first, second = fed.clients
    # Assert: per volume, its 6 slices with foreground cut 4/1/1 (inferior ones in train) and its 2 empty
    # ones (fewer than 3) both in train: 6/1/1 per volume, and val and test hold foreground
    assert first.cases == {s: ("case0", "case1") for s in SPLITS}
    assert second.cases == {s: ("case2", "case3") for s in SPLITS}
    assert _counts(first) == _counts(second) == [12, 2, 2]
    intensity = {s: first.splits[s][0][:, 0].mean(axis=(1, 2)) for s in SPLITS}  # slice k holds k / 9
    foreground = {s: first.splits[s][1].reshape(len(first.splits[s][1]), -1).any(axis=1) for s in SPLITS}
    assert foreground["val"].all() and foreground["test"].all()
    for volume in range(2):  # rows: case0's slices, then case1's (6/1/1 each)
        train, val, test = (intensity[s].reshape(2, -1)[volume] for s in SPLITS)
        train_fg = train[foreground["train"].reshape(2, -1)[volume]]
        assert train_fg.max() < val.min() <= val.max() < test.min()
    assert "| site-1 | a_ct   | CT       | slab split: 2 volumes" in fed.summary()


def test_sub_volumes_of_one_scan_stay_together(synthetic):
    # Prepare: b_mr's case1 lies on case0's grid, 5 slices up (15 mm): one scan
    # Execute
    (site,) = _build(synthetic / "b_mr", 1).clients
    # Assert: one piece "case0+case1" in every split (slab split on world z), all 8 + 8 kept slices used
    assert site.cases == {s: ("case0+case1",) for s in SPLITS}
    assert sum(_counts(site)) == 16


def test_sources_round_robin_one_label_space_and_left_out_sources(synthetic):
    # Prepare: a_ct (tumour) and b_mr (Lesion) are one lesion task
    data_dir = os.pathsep.join([str(synthetic / "b_mr"), str(synthetic / "a_ct")])
    # Execute
    fed = _build(data_dir, 3)
    one = _build(data_dir, 1)
    # Assert: sorted sources a_ct, b_mr: site-1 a_ct, site-2 b_mr, site-3 a_ct (volumes 2 + 2)
    assert [c.source for c in fed.clients] == ["a_ct", "b_mr", "a_ct"]
    assert fed.class_names == ("background", "lesion") and fed.num_classes == 2
    assert fed.client("site-3").cases["train"] == ("case2", "case3")
    assert [c.source for c in one.clients] == ["a_ct"]
    assert "first 1 sources only, left out: b_mr" in one.summary_title()
    assert fed.summary().count("\n| site-") == 3


def test_glob_entry_and_mixed_label_spaces_error(synthetic):
    # Execute / Assert: a folder of MSD folders holding lesion and organ sources is refused in one line
    with pytest.raises(ValueError, match="mixes label spaces") as error:
        _build(synthetic, 2)
    message = str(error.value)
    assert "\n" not in message and "c_organs" in message and "lesion: a_ct, b_mr" in message
    assert [c.source for c in _build(str(synthetic / "[ab]_*"), 2).clients] == ["a_ct", "b_mr"]
    assert _build(synthetic / "c_organs", 1).class_names == ("background", "liver", "spleen")


def test_bad_folders_and_scenarios_give_one_line_errors(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        _build(tmp_path / "no_such_folder", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither an MSD folder"):
        _build(tmp_path / "empty", 2)
    with pytest.raises(ValueError, match="data_dir"):
        build_segmentation_federation("iid", 2, data_dir=synthetic / "a_ct")
    with pytest.raises(ValueError, match="slab split needs >= 4"):
        _build(synthetic / "c_organs", 4)  # 8 kept slices in 4 z parts of 2


def test_cap_zero_determinism_pooled_and_npz_round_trip(synthetic, tmp_path):
    # Execute
    capped = _build(synthetic / "a_ct", 2, samples_per_client=3, seed=5)
    again = _build(synthetic / "a_ct", 2, samples_per_client=3, seed=5)
    full, zero = _build(synthetic / "a_ct", 2, samples_per_client=0), _build(synthetic / "a_ct", 2)
    # Assert: the cap is on train only, seeded; 0 and None keep everything
    assert _counts(capped.clients[0]) == [3, 2, 2]
    for a, b in zip(capped.clients, again.clients):
        for s in SPLITS:
            assert all(np.array_equal(x, y) for x, y in zip(a.splits[s], b.splits[s]))
    assert _counts(full.clients[0]) == _counts(zero.clients[0]) == [12, 2, 2]
    pooled = full.pooled(SIZE)
    assert (pooled.name, _counts(pooled)) == ("pooled", [24, 4, 4])
    assert pooled.spacing["train"].shape == (24, 2)
    # the bundle's loader reads a site back with its spacing, scaled to the bundle's image_size
    full.clients[0].save_npz(tmp_path / "site-1.npz")
    assert load_segmentation_npz(tmp_path / "site-1.npz").cases == full.clients[0].cases
    items = load_segmentation_split(tmp_path / "site-1.npz", "test", image_size=64)
    assert len(items) == 2 and items[0]["label"].shape == (1, 64, 64)
    np.testing.assert_allclose(items[0]["spacing"], [0.5, 0.5])  # 32 mm field of view on 64 px


def test_phantom_sites_still_load_without_spacing(tmp_path):
    fed = build_segmentation_federation("cross_modality_hard", 2, image_size=SIZE, samples_per_client=10)
    fed.clients[0].save_npz(tmp_path / "site-1.npz")
    items = load_segmentation_split(tmp_path / "site-1.npz", "test", image_size=SIZE)
    assert items and all("spacing" not in d for d in items)
    assert _counts(fed.pooled(SIZE)) == [12, 4, 4]


# ---- the shared real data --------------------------------------------------------------------------------------


@needs_real
def test_real_organ_federation_of_totalseg_ct(tmp_path):
    # Execute: totalseg_ct alone on 4 sites: 2 scans (001 + its sub-volume 002; 003) < 4 sites -> z parts
    fed = _build(REAL / "totalseg_ct", 4)
    # Assert
    assert fed.num_classes == 21 and fed.class_names[5] == "liver"
    for j, site in enumerate(fed.clients, start=1):
        expected = (f"totalseg_ct_001+totalseg_ct_002 z{j}/4", f"totalseg_ct_003 z{j}/4")
        assert site.cases == {s: expected for s in SPLITS}
        assert all(site.num_samples(s) > 0 for s in SPLITS)
        mm = {tuple(np.round(v.astype(np.float64), 4)) for v in site.spacing["train"]}
        assert mm == {(11.4375, 9.4688), (15.625, 15.625)}  # 3 mm x 122/101 px; 0.977 mm x 512 px -> 32 px
    again = _build(REAL / "totalseg_ct", 4)
    assert all(np.array_equal(a.splits["test"][1], b.splits["test"][1]) for a, b in zip(fed.clients, again.clients))
    fed.clients[1].save_npz(tmp_path / "site-2.npz")
    items = load_segmentation_split(tmp_path / "site-2.npz", "train", image_size=SIZE)
    assert len(items) == fed.clients[1].num_samples("train") and "spacing" in items[0]
    assert _counts(fed.pooled(SIZE)) == [sum(c.num_samples(s) for c in fed.clients) for s in SPLITS]


@needs_real
def test_real_lesion_federation_of_brain_and_breast_mr():
    # Execute: sorted sources brain, breast; 3 sites -> site-1 brain1, site-2 breast1, site-3 brain2
    data_dir = os.pathsep.join(str(REAL / f) for f in ("pyradiomics_brain_mr", "pyradiomics_breast_mr"))
    fed = _build(data_dir, 3, samples_per_client=2)
    # Assert
    assert fed.class_names == ("background", "lesion")
    assert [c.cases["test"] for c in fed.clients] == [("brain1",), ("breast1",), ("brain2",)]
    assert [c.modality for c in fed.clients] == ["MRI"] * 3
    assert all(c.num_samples("train") <= 2 and c.num_samples("test") >= 1 for c in fed.clients)
    np.testing.assert_allclose(fed.clients[0].spacing["val"][0], [6.25, 6.25])  # 0.78125 mm x 256 px -> 32 px
    assert "slab split: 1 volume" in fed.summary()


@needs_real
def test_real_segmentation_root_mixes_label_spaces():
    with pytest.raises(ValueError, match="totalseg_ct") as error:
        _build(REAL, 4)
    assert "pyradiomics_breast_mr" in str(error.value) and "\n" not in str(error.value)


def test_task_evaluator_reports_hd95_in_mm(synthetic, tmp_path):
    # Prepare: a_ct's site (32 mm field of view) read by the task's evaluator at 64 px (0.5 mm per pixel)
    _build(synthetic / "a_ct", 1).clients[0].save_npz(tmp_path / "site-1.npz")
    keys = {"image_size": 64, "in_channels": 1, "spatial_dims": 2, "num_samples": 10, "seed": 0, "num_classes": 2}
    evaluate = SegmentationTask().test_evaluator(str(tmp_path / "site-1.npz"), ConfigParser(keys))

    class Background(nn.Conv2d):  # logits (N, 2, S, S) favouring class 0 everywhere
        def forward(self, x):
            return torch.cat([torch.ones_like(x), torch.zeros_like(x)], dim=1)

    # Execute
    metrics = evaluate(Background(1, 2, 1))
    # Assert: every missed lesion scores the image diagonal in mm, 32 mm * sqrt(2) (64 px * sqrt(2) without spacing)
    assert metrics["dice"] == 0.0
    assert metrics["hd95"] == pytest.approx(32 * np.sqrt(2), rel=1e-5)
