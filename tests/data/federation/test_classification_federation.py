"""Tests of the named federated partitions (phantom and MedMNIST-folder sources) and participant sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnifm_monai.data.federation import SCENARIOS, Federation, build_federation
from omnifm_monai.flare.sampling import sample_participants

REAL_MEDMNIST = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "medmnist"

# name -> (sizes train/val/test, num classes, rgb, image size)
FAKE_FILES = {
    "alphamnist.npz": ((60, 20, 30), 2, False, 28),
    "alphamnist_64.npz": ((60, 20, 30), 2, False, 64),
    "betamnist.npz": ((200, 40, 40), 3, False, 28),
    "gammamnist.npz": ((100, 20, 25), 5, True, 28),
}


def _write_fake(path: Path, sizes, num_classes: int, rgb: bool, size: int, file_id: int) -> None:
    """Official layout; pixel (0, 0..2) of each image encodes (file id, split id, index) to track samples."""
    arrays = {}
    for split_id, (split, n) in enumerate(zip(("train", "val", "test"), sizes)):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        images = np.random.default_rng(split_id).integers(0, 256, size=shape, dtype=np.uint8)
        corner = images[:, 0, :4, 0] if rgb else images[:, 0, :4]
        corner[:, 0] = file_id
        corner[:, 1] = split_id
        corner[:, 2] = np.arange(n) % 256
        corner[:, 3] = np.arange(n) // 256
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8).reshape(n, 1)
    np.savez_compressed(path, **arrays)


@pytest.fixture()
def npz_dir(tmp_path: Path) -> Path:
    for file_id, (name, spec) in enumerate(FAKE_FILES.items()):
        _write_fake(tmp_path / name, *spec, file_id=file_id)
    return tmp_path


def _sample_ids(images: np.ndarray) -> list[tuple[int, int, int]]:
    corner = images[:, 0, :4, 0] if images.ndim == 4 else images[:, 0, :4]
    return [(int(f), int(s), int(a) + 256 * int(b)) for f, s, a, b in corner]


def _assert_labels_in_space(federation: Federation) -> None:
    for client in federation.clients:
        for images, labels in client.splits.values():
            assert set(labels.tolist()) <= set(client.label_space)
            assert images.dtype == np.uint8 and images.shape[0] == labels.shape[0]
        assert client.class_names == tuple(federation.class_names[i] for i in client.label_space)


def test_npz_hard_assignment_and_label_spaces(npz_dir):
    fed = build_federation("cross_modality_hard", 10, data_dir=npz_dir, image_size=28, samples_per_client=None)
    sources = [c.source for c in fed.clients]
    # min(3, 10 // 3) = 3 each, the remaining site goes to the largest training set (betamnist)
    assert sources.count("alphamnist.npz") == 3
    assert sources.count("betamnist.npz") == 4
    assert sources.count("gammamnist.npz") == 3
    assert [c.name for c in fed.clients] == [f"site-{i}" for i in range(1, 11)]
    assert fed.num_classes == 2 + 3 + 5
    spaces = {c.source: c.label_space for c in fed.clients}
    assert spaces == {"alphamnist.npz": (0, 1), "betamnist.npz": (2, 3, 4), "gammamnist.npz": (5, 6, 7, 8, 9)}
    assert fed.class_names[0] == "alphamnist:class_0"
    _assert_labels_in_space(fed)


def test_npz_splits_are_disjoint_and_complete(npz_dir):
    fed = build_federation("cross_modality_hard", 7, data_dir=npz_dir, image_size=28, samples_per_client=None)
    seen: list[tuple[int, int, int]] = []
    for client in fed.clients:
        for split_id, split in enumerate(("train", "val", "test")):
            ids = _sample_ids(client.splits[split][0])
            assert all(s == split_id for _, s, _ in ids)
            seen += ids
    assert len(seen) == len(set(seen))  # no image held twice
    expected = sum(sum(spec[0]) for name, spec in FAKE_FILES.items() if name != "alphamnist_64.npz")
    assert len(seen) == expected  # nothing lost


def test_npz_partition_is_stratified(npz_dir):
    fed = build_federation("cross_modality_hard", 10, data_dir=npz_dir, image_size=28, samples_per_client=None)
    beta = [c for c in fed.clients if c.source == "betamnist.npz"]
    for client in beta:
        counts = np.bincount(client.splits["train"][1] - 2, minlength=3)
        assert counts.max() - counts.min() <= 1  # 200 train images over 4 sites, 3 balanced classes


def test_npz_size_variant_selection(npz_dir):
    fed64 = build_federation("cross_modality_hard", 3, data_dir=npz_dir, image_size=64)
    fed28 = build_federation("cross_modality_hard", 3, data_dir=npz_dir, image_size=28)
    fed128 = build_federation("cross_modality_hard", 3, data_dir=npz_dir, image_size=128)
    assert "alphamnist_64.npz" in {c.source for c in fed64.clients}
    assert "alphamnist.npz" in {c.source for c in fed28.clients}
    assert "alphamnist.npz" in {c.source for c in fed128.clients}  # no 128 variant: the 28 px file


def test_npz_numbered_file_names_are_separate_sources(tmp_path):
    _write_fake(tmp_path / "hospital_1.npz", (10, 4, 4), 2, False, 28, file_id=0)
    _write_fake(tmp_path / "hospital_2.npz", (10, 4, 4), 2, True, 28, file_id=1)
    fed = build_federation("cross_modality_hard", 2, data_dir=tmp_path)
    assert [c.source for c in fed.clients] == ["hospital_1.npz", "hospital_2.npz"]
    assert [c.label_space for c in fed.clients] == [(0, 1), (2, 3)]


def test_npz_train_cap(npz_dir):
    fed = build_federation("cross_modality_hard", 3, data_dir=npz_dir, image_size=28, samples_per_client=25)
    for client in fed.clients:
        assert client.num_samples("train") == 25
        assert client.num_samples("test") > 0


def test_npz_determinism_by_seed(npz_dir):
    a = build_federation("cross_modality_mixed", 5, data_dir=npz_dir, image_size=28, seed=3)
    b = build_federation("cross_modality_mixed", 5, data_dir=npz_dir, image_size=28, seed=3)
    c = build_federation("cross_modality_mixed", 5, data_dir=npz_dir, image_size=28, seed=4)
    for x, y in zip(a.clients, b.clients):
        assert x.label_space == y.label_space and x.modality == y.modality
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(x.splits[split][0], y.splits[split][0])
            np.testing.assert_array_equal(x.splits[split][1], y.splits[split][1])
    assert any(
        x.modality != z.modality or not np.array_equal(x.splits["train"][0], z.splits["train"][0])
        for x, z in zip(a.clients, c.clients)
    )


@pytest.mark.parametrize("scenario", ["cross_modality_mixed", "iid"])
def test_npz_mixed_and_iid_sites(npz_dir, scenario):
    fed = build_federation(scenario, 4, data_dir=npz_dir, image_size=64, samples_per_client=None)
    _assert_labels_in_space(fed)
    for client in fed.clients:
        n_sources = len(client.source.split("+"))
        assert n_sources >= 2 if scenario == "cross_modality_mixed" else n_sources == 3
        if "gammamnist.npz" in client.source:
            assert client.splits["train"][0].ndim == 4  # mixing gray and RGB: everything RGB
        shapes = {client.splits[s][0].shape[1:3] for s in ("train", "val", "test")}
        assert len(shapes) == 1
        if "alphamnist_64.npz" in client.source and n_sources > 1:
            assert shapes == {(64, 64)}  # mixing 64 px and 28 px: resized to image_size
    if scenario == "iid":
        assert all(c.label_space == tuple(range(10)) for c in fed.clients)


def test_summary_lists_every_site(npz_dir):
    fed = build_federation("cross_modality_hard", 4, data_dir=npz_dir, image_size=28)
    text = fed.summary()
    for client in fed.clients:
        assert f"| {client.name} " in text
    assert "test majority" in text and "cross_modality_hard" in text


def test_bad_arguments(npz_dir, tmp_path):
    with pytest.raises(ValueError, match="cross_modality_hard"):
        build_federation("scenario_2", 3)
    with pytest.raises(ValueError, match="num_clients"):
        build_federation("iid", 0)
    with pytest.raises(ValueError, match="num_clients=2"):
        build_federation("cross_modality_hard", 2, data_dir=npz_dir)
    with pytest.raises(ValueError, match="modalities"):
        build_federation("cross_modality_hard", 3, data_dir=npz_dir, modalities=["PET"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_federation("iid", 2, data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="sites"):
        build_federation("iid", 25, data_dir=npz_dir)  # alphamnist has only 20 validation images


def test_sample_participants():
    first = sample_participants(10, 0.2, round_num=0, seed=1)
    assert first == sample_participants(10, 0.2, round_num=0, seed=1)
    assert first == sorted(set(first)) and len(first) == 2
    assert all(0 <= i < 10 for i in first)
    rounds = {tuple(sample_participants(10, 0.2, round_num=r, seed=1)) for r in range(20)}
    assert len(rounds) > 1  # changes between rounds
    assert sample_participants(10, 1.0, 5, 0) == list(range(10))
    assert len(sample_participants(50, 0.3, 2, 0)) == 15
    assert len(sample_participants(3, 0.01, 0, 0)) == 1  # at least one
    for bad in ({"participation": 0.0}, {"participation": 1.5}, {"num_clients": 0}):
        kwargs = {"num_clients": 5, "participation": 0.5, "round_num": 0, "seed": 0} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            sample_participants(**kwargs)


def test_participation_rate_over_rounds():
    counts = np.zeros(10)
    for r in range(2000):
        counts[sample_participants(10, 0.3, r, seed=7)] += 1
    assert counts.sum() == 3 * 2000
    np.testing.assert_allclose(counts / 2000, 0.3, atol=0.05)  # every site ~ the participation rate


# ---- phantom source ---------------------------------------------------------------------------------


def test_phantom_hard_one_modality_per_site():
    from omnifm_monai.data.phantom import FINDINGS, MODALITIES

    fed = build_federation("cross_modality_hard", 9, image_size=32, samples_per_client=30, seed=1)
    assert fed.class_names == tuple(FINDINGS)
    assert [c.modality for c in fed.clients] == [MODALITIES[i % len(MODALITIES)] for i in range(9)]
    _assert_labels_in_space(fed)
    spaces = [c.label_space for c in fed.clients[: len(MODALITIES)]]
    assert all(len(s) == min(3, len(FINDINGS)) for s in spaces)
    if len(FINDINGS) > 3:
        assert len(set(spaces)) == len(spaces)  # differ across modalities
    assert fed.clients[7].label_space == fed.clients[0].label_space  # same modality, same label space
    for client in fed.clients:
        assert [client.num_samples(s) for s in ("train", "val", "test")] == [18, 6, 6]
        images = client.splits["train"][0]
        expected = (18, 32, 32, 3) if client.modality == "PATHOLOGY" else (18, 32, 32)
        assert images.shape == expected and images.dtype == np.uint8
    # distinct phantom seeds: two CT sites hold different images
    assert not np.array_equal(fed.clients[0].splits["train"][0], fed.clients[7].splits["train"][0])


def test_phantom_determinism_and_scenarios():
    from omnifm_monai.data.phantom import FINDINGS

    a = build_federation("cross_modality_mixed", 3, image_size=32, samples_per_client=30, seed=2)
    b = build_federation("cross_modality_mixed", 3, image_size=32, samples_per_client=30, seed=2)
    for x, y in zip(a.clients, b.clients):
        assert x.modality == y.modality
        np.testing.assert_array_equal(x.splits["train"][0], y.splits["train"][0])
    for client in a.clients:
        assert 2 <= len(client.modality.split("+")) <= 3
    _assert_labels_in_space(a)
    iid = build_federation("iid", 2, image_size=32, samples_per_client=28, seed=0)
    for client in iid.clients:
        assert client.label_space == tuple(range(len(FINDINGS)))
        assert client.splits["train"][0].ndim == 4  # pathology included: everything RGB
    summary = iid.summary()
    assert "site-1" in summary and "site-2" in summary


def test_real_medmnist_ten_sites():
    if not REAL_MEDMNIST.is_dir():
        pytest.skip(f"real MedMNIST files not found at {REAL_MEDMNIST}")
    fed = build_federation("cross_modality_hard", 10, data_dir=REAL_MEDMNIST)
    modalities = [c.modality for c in fed.clients]
    assert (modalities.count("US"), modalities.count("XRAY"), modalities.count("FUNDUS")) == (3, 4, 3)
    assert fed.num_classes == 2 + 2 + 5
    _assert_labels_in_space(fed)
    assert all(c.num_samples("train") <= 240 for c in fed.clients)


def test_scenarios_constant():
    assert SCENARIOS == ("cross_modality_hard", "cross_modality_mixed", "iid", "cross_modality_shared")


def test_late_sites_are_eligible_from_their_round_on():
    from omnifm_monai.flare.sampling import eligible_sites, parse_late_sites

    sites = ["site-1", "site-2", "site-3", "site-4"]
    late = parse_late_sites("site-4:3, site-2:1")
    assert late == {"site-4": 3, "site-2": 1}
    assert eligible_sites(sites, 0, late) == ["site-1", "site-3"]
    assert eligible_sites(sites, 1, late) == ["site-1", "site-2", "site-3"]
    assert eligible_sites(sites, 3, late) == sites
    assert eligible_sites(sites, 0, {}) == sites  # no late sites: the sampling is unchanged
    with pytest.raises(ValueError, match="not among"):
        eligible_sites(sites, 0, {"site-9": 1})
    with pytest.raises(ValueError, match="no site may train"):
        eligible_sites(["site-1"], 0, {"site-1": 2})
    for bad in ("site-4", "site-4:x", "site-4:1,site-4:2", ":3"):
        with pytest.raises(ValueError, match="site:round"):
            parse_late_sites(bad)
