"""Tests of the fixed-task scenario ``cross_modality_shared``: the label map, unequal site sizes, several folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from omnifm_monai.data.federation import build_federation
from omnifm_monai.data.federation.label_map import load_label_map
from omnifm_monai.data.federation.site_sizes import parse_site_sizes, sizes_per_site
from omnifm_monai.data.phantom import FINDINGS

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared" / "data"
TRIAGE_MAP = REPO / "benchmarks" / "label_maps" / "medmnist_triage.json"
MAP = {"alpha": {"0": "normal", "1": "abnormal"}, "beta": {"0": "abnormal", "1": "normal", "2": None}}


def _write(path: Path, sizes: tuple[int, int, int], num_classes: int) -> None:
    """A MedMNIST-layout file whose labels cycle 0, 1, .., num_classes - 1 in every split."""
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = np.full((n, 28, 28), 7, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8).reshape(n, 1)
    np.savez_compressed(path, **arrays)


@pytest.fixture()
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    _write(first / "alpha.npz", (60, 20, 30), 2)
    _write(second / "beta.npz", (90, 30, 30), 3)
    _write(second / "unused.npz", (10, 10, 10), 4)  # not in the map: never read
    return first, second


def test_label_map_relabels_drops_and_orders_classes(two_folders):
    # Prepare: alpha 60 train (30 of each label); beta 90 train (30 of each), label 2 dropped
    data_dir = os.pathsep.join(str(f) for f in two_folders)
    # Execute
    fed = build_federation("cross_modality_shared", 2, data_dir=data_dir, label_map=MAP, samples_per_client=None)
    # Assert: shared ids in order of first appearance, every site the whole label space
    assert fed.class_names == ("normal", "abnormal")
    alpha, beta = fed.clients
    assert (alpha.source, beta.source) == ("alpha.npz", "beta.npz")
    assert alpha.label_space == beta.label_space == (0, 1)
    assert np.bincount(alpha.splits["train"][1]).tolist() == [30, 30]  # alpha 0 -> normal, 1 -> abnormal
    # beta: source 0 (30) -> abnormal (id 1), source 1 (30) -> normal (id 0), source 2 (30) dropped
    assert np.bincount(beta.splits["train"][1]).tolist() == [30, 30]
    assert [beta.num_samples(s) for s in ("train", "val", "test")] == [60, 20, 20]
    first_labels = beta.splits["val"][1][:3].tolist()  # val labels 0, 1, 2, 0, ... -> 1, 0, (dropped), 1
    assert first_labels == [1, 0, 1]


def test_label_map_file_and_its_errors(two_folders, tmp_path):
    first, second = two_folders
    path = tmp_path / "map.json"
    path.write_text(json.dumps(MAP))
    assert load_label_map(path).files == {"alpha": {0: 0, 1: 1}, "beta": {0: 1, 1: 0, 2: None}}
    with pytest.raises(ValueError, match="label map .*'alpha' has train label\\(s\\) \\[1\\]"):
        build_federation("cross_modality_shared", 2, data_dir=[first, second], label_map={"alpha": {"0": "x"}})
    with pytest.raises(FileNotFoundError, match="names \\['beta'\\]"):
        build_federation("cross_modality_shared", 1, data_dir=first, label_map=MAP)
    with pytest.raises(ValueError, match="needs label_map="):
        build_federation("cross_modality_shared", 2, data_dir=[first, second])
    with pytest.raises(ValueError, match="on the phantom it names only 'phantom'"):
        build_federation("cross_modality_shared", 2, label_map=MAP)
    with pytest.raises(ValueError, match="expected an integer label id"):
        load_label_map({"alpha": {"zero": "normal"}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json' is not valid JSON"):
        load_label_map(bad)


def test_site_sizes_cap_each_folder_site(two_folders):
    fed = build_federation(
        "cross_modality_shared",
        2,
        data_dir=list(two_folders),
        label_map=MAP,
        site_sizes="10,100",
        samples_per_client=None,
    )
    # site-1 (alpha) capped at 10, stratified 5/5; site-2 (beta, 60 after the drop) keeps all under its cap of 100
    assert [c.num_samples("train") for c in fed.clients] == [10, 60]
    assert np.bincount(fed.clients[0].splits["train"][1]).tolist() == [5, 5]
    assert fed.clients[0].num_samples("val") == 20  # validation and test are never capped


def test_phantom_shared_same_findings_one_modality_per_site():
    fed = build_federation("cross_modality_shared", 3, image_size=32, site_sizes=(20, 10, 10))
    assert [c.num_samples("train") for c in fed.clients] == [12, 6, 6]  # 60 % of each site's images
    assert [c.num_samples("test") for c in fed.clients] == [4, 2, 2]
    assert all(c.label_space == tuple(range(len(FINDINGS))) for c in fed.clients)
    assert len({c.modality for c in fed.clients}) == 3 and all("+" not in c.modality for c in fed.clients)


def test_phantom_label_map_renders_only_the_mapped_findings_and_relabels_them():
    # Prepare: normal vs abnormal from three of the six findings (0 normal, 2 solid tumour, 5 oedema)
    triage = {"phantom": {"0": "normal", "2": "abnormal", "5": "abnormal", "3": None}}
    # Execute
    fed = build_federation("cross_modality_shared", 2, image_size=32, site_sizes=(30, 30), label_map=triage)
    plain = build_federation("cross_modality_shared", 2, image_size=32, site_sizes=(30, 30))
    # Assert: the map's classes, every image kept (nothing rendered that is then dropped), both classes present
    assert fed.class_names == ("normal", "abnormal") and fed.num_classes == 2
    for site, other in zip(fed.clients, plain.clients):
        assert site.label_space == (0, 1) and site.class_names == ("normal", "abnormal")
        assert site.num_samples("train") == other.num_samples("train") == 18
        labels = np.concatenate([y for _, y in site.splits.values()])
        assert set(labels.tolist()) == {0, 1} and 0.2 < labels.mean() < 0.9  # 2 of 3 rendered findings abnormal
        assert site.modality == other.modality


def test_phantom_label_map_errors():
    with pytest.raises(ValueError, match=r"finding id\(s\) \[7\]; expected ids 0-5"):
        build_federation("cross_modality_shared", 2, label_map={"phantom": {"0": "normal", "7": "abnormal"}})
    with pytest.raises(ValueError, match="one label space for every site.*cross_modality_hard"):
        build_federation("cross_modality_hard", 2, label_map={"phantom": {"0": "normal", "1": "abnormal"}})


def test_site_sizes_parsing_and_errors():
    assert parse_site_sizes("400, 400,60") == (400, 400, 60)
    assert parse_site_sizes("") == ()
    assert sizes_per_site("", 2, 240) == [240, 240]
    with pytest.raises(ValueError, match="site_sizes='4x'"):
        parse_site_sizes("4x")
    with pytest.raises(ValueError, match="expected 3 sizes >= 1, one per site"):
        sizes_per_site((400, 60), 3, None)
    with pytest.raises(ValueError, match="must be >= 5"):
        build_federation("cross_modality_shared", 2, site_sizes=(20, 4))


@pytest.mark.skipif(not (SHARED / "medmnist").is_dir(), reason="needs ../shared/data (the project's real data)")
def test_real_triage_federation_counts():
    folders = [SHARED / "medmnist", SHARED / "real" / "classification_shared_label"]
    fed = build_federation(
        "cross_modality_shared", 6, data_dir=folders, image_size=28, label_map=TRIAGE_MAP, samples_per_client=None
    )
    assert fed.class_names == ("normal", "abnormal")
    by_source = {c.source: c for c in fed.clients}
    # hand counts from the files: pneumonia 1214 normal / 3494 pneumonia; breast 147 malignant / 399 other;
    # retina grade 0: 486 of 1080; the tumour slices' README: lung 67/10, brain 27/7, breast MR 13/2
    expected = {
        "pneumoniamnist.npz": [1214, 3494],
        "breastmnist.npz": [399, 147],
        "retinamnist.npz": [486, 594],
        "lungct_tumour_64.npz": [67, 10],
        "brainmr_tumour_64.npz": [27, 7],
        "breastmr_lesion_64.npz": [13, 2],
    }
    assert {s: np.bincount(c.splits["train"][1], minlength=2).tolist() for s, c in by_source.items()} == expected
