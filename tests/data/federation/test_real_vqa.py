"""Tests of the derived (real-data) VQA federation: synthetic MSD folders, and the shared real folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from omnifm_monai.data.federation import build_vqa_federation
from omnifm_monai.data.site_archive import SPLITS, load_site_archive
from omnifm_monai.data.vqa import load_vqa_npz, load_vqa_split

REPO = Path(__file__).resolve().parents[3]
REAL = REPO / ".." / "shared" / "data" / "real" / "segmentation"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real/segmentation is absent")


def _same_archives(a, b, tmp_path: Path) -> bool:
    a.save_npz(tmp_path / "a.npz"), b.save_npz(tmp_path / "b.npz")
    x, y = load_site_archive(tmp_path / "a.npz"), load_site_archive(tmp_path / "b.npz")
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_synthetic_sources_round_robin_blocks_cap_and_pooled(msd_root, tmp_path):
    # Prepare / Execute: 2 sources, 4 sites -> sites 1, 3 share lesion_mr (4 slices per split: 2 + 2),
    # sites 2, 4 share organs_ct (slabs of 6/2/2 slices: 3 + 3, 1 + 1, 1 + 1)
    fed = build_vqa_federation("cross_modality_hard", 4, data_dir=msd_root, image_size=32, samples_per_client=0)
    # Assert
    assert [c.source for c in fed.clients] == [f"derived from {n} masks" for n in ("lesion_mr", "organs_ct") * 2]
    assert [c.modality for c in fed.clients] == ["MRI", "CT", "MRI", "CT"]
    assert [[c.num_images(s) for s in SPLITS] for c in fed.clients] == [[2, 2, 2], [3, 1, 1], [2, 2, 2], [3, 1, 1]]
    assert fed.clients[0].images["train"].shape == (2, 32, 32)
    one, three = fed.clients[0], fed.clients[2]
    assert {p["volume"] for p in one.qa["train"]} == {p["volume"] for p in three.qa["train"]}  # one volume in train
    assert "lesion_mr" in fed.summary() and "by scan" in fed.summary() and "z slabs" in fed.summary()
    assert fed.vocabularies.answers.answers[:3] == ["ct", "kidney", "liver"]
    # the cap: training images only, seeded; 0 and None are all the data
    capped = build_vqa_federation("cross_modality_hard", 4, data_dir=msd_root, image_size=32, samples_per_client=1)
    assert [[c.num_images(s) for s in SPLITS] for c in capped.clients] == [[1, 2, 2], [1, 1, 1], [1, 2, 2], [1, 1, 1]]
    again = build_vqa_federation("cross_modality_hard", 4, data_dir=msd_root, image_size=32, samples_per_client=None)
    assert all(_same_archives(a, b, tmp_path) for a, b in zip(fed.clients, again.clients))  # determinism, 0 == None
    pooled = fed.pooled(32)
    assert pooled.name == "pooled" and [pooled.num_images(s) for s in SPLITS] == [10, 6, 6]
    assert pooled.num_questions("test") == sum(c.num_questions("test") for c in fed.clients)


def test_site_archive_is_read_by_the_bundle_loader_with_every_training_question(msd_root, tmp_path):
    # Prepare
    fed = build_vqa_federation("cross_modality_hard", 2, data_dir=msd_root, image_size=32)
    ct = fed.client("site-2")
    ct.save_npz(tmp_path / "site-2.npz")
    # Execute
    train = load_vqa_split(tmp_path / "site-2.npz", "train", image_size=32, in_channels=3)
    back = load_vqa_npz(tmp_path / "site-2.npz")
    # Assert: the phantom's held-out (type, modality) pairs never drop derived questions ("CT (derived)")
    assert len(train) == ct.num_questions("train") and train[0]["image"].shape == (3, 32, 32)
    assert back.vocabularies == fed.vocabularies and back.source == "derived from organs_ct masks"
    assert {d["question_type"] for d in train} >= {"organ_presence", "organ_location", "modality"}
    assert all(int(d["label"]) >= 0 for d in train)


def test_fewer_sites_than_sources_and_bad_arguments(msd_root, tmp_path):
    fed = build_vqa_federation("cross_modality_hard", 1, data_dir=msd_root, image_size=32)
    assert fed.sources == ("lesion_mr",) and "left out: organs_ct" in fed.summary_title()
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        build_vqa_federation("cross_modality_hard", 2, data_dir=tmp_path / "no_such_folder")
    with pytest.raises(ValueError, match="scenario='iid'"):
        build_vqa_federation("iid", 2, data_dir=msd_root)
    with pytest.raises(ValueError, match="use fewer clients"):  # organs_ct val has 2 slices for 3 sites
        build_vqa_federation("cross_modality_hard", 6, data_dir=msd_root, image_size=32)


def test_vqa_job_fixes_the_federation_vocabulary_size_for_the_server_and_sites(msd_root, tmp_path):
    # a derived federation's vocabulary (not the phantom's) sizes the server's embedding and every site's
    from omnifm_monai.jobs import JobSettings, build_job

    settings = JobSettings(task="vqa", num_clients=2, num_rounds=1, image_size=32, federation_data=str(msd_root))
    settings.state_root, settings.strategy = str(tmp_path / "state"), "fedavg"
    job, federation = build_job(settings)
    job.export_job(str(tmp_path / "jobs"))
    app = tmp_path / "jobs" / settings.name
    vocab_size = federation.vocabularies.vocab_size
    weights = torch.load(app / "app_server" / "custom" / "omnifm_initial_model.pt", weights_only=True)
    weights = weights.get("model", weights)
    embeddings = [v.shape[0] for k, v in weights.items() if "embed" in k and k.endswith("weight") and v.ndim == 2]
    assert vocab_size != 41 and vocab_size in embeddings  # 41: the phantom's question tokens
    client = (app / "app_site-1" / "config" / "config_fed_client.json").read_text()
    assert f'vocab_size\\":{vocab_size}' in client or f'"vocab_size":{vocab_size}' in client


def test_phantom_federation_pooled():
    fed = build_vqa_federation("cross_modality_hard", 2, image_size=32, samples_per_client=10)
    pooled = fed.pooled(32)
    assert [pooled.num_images(s) for s in SPLITS] == [12, 4, 4]
    assert pooled.num_questions("train") == sum(c.num_questions("train") for c in fed.clients)
    assert pooled.images["train"].shape == (12, 32, 32) and pooled.vocabularies == fed.vocabularies


SMALL = ("pyradiomics_brain_mr", "pyradiomics_breast_mr", "totalseg_ct")
"""The real sources read in CI (the two 512 x 512 lung CTs take most of a full build; the smoke run and the
opt-in ``OMNIFM_RUN_REAL_VQA_FULL=1`` test read the whole folder)."""


def _linked(root: Path, names) -> Path:
    """A folder of links to some real sources (the data is not copied)."""
    root.mkdir()
    for name in names:
        (root / name).symlink_to((REAL / name).resolve(), target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def real_federation(tmp_path_factory):
    """4 sites over 3 real sources: site-1 and site-4 share brain MR, site-2 breast MR, site-3 TotalSegmentator CT."""
    root = _linked(tmp_path_factory.mktemp("real") / "segmentation", SMALL)
    return build_vqa_federation("cross_modality_hard", 4, data_dir=root, image_size=32)


@needs_real
def test_real_four_sites_split_rule_and_balance(real_federation):
    fed = real_federation
    assert fed.sources == SMALL and [c.modality for c in fed.clients] == ["MRI", "MRI", "CT", "MRI"]
    assert all(c.images[s].shape[1:] == (32, 32) for c in fed.clients for s in SPLITS)
    # fewer than 3 scans per source -> z slabs; totalseg_ct_002 (slices 82-111 of _001) lies in the top slabs
    totalseg = fed.client("site-3")
    assert {p["split_rule"] for c in fed.clients for p in c.qa["train"]} == {"z slabs"}
    assert "totalseg_ct_002" not in {p["volume"] for p in totalseg.qa["train"]}
    assert {p["volume"] for p in totalseg.qa["test"]} >= {"totalseg_ct_001", "totalseg_ct_002"}
    # brain MR: 20 slices (10 with tumour, 10 without) in slabs 12/4/4, each split halved between site-1 and site-4
    brain = (fed.client("site-1"), fed.client("site-4"))
    assert [[c.num_images(s) for s in SPLITS] for c in brain] == [[6, 2, 2], [6, 2, 2]]
    answers = [p["answer"] for c in brain for s in SPLITS for p in c.qa[s] if p["question_type"] == "presence"]
    assert answers.count("yes") == answers.count("no") == 10
    organ = [p["answer"] for s in SPLITS for p in totalseg.qa[s] if p["question_type"] == "organ_presence"]
    assert organ.count("yes") == organ.count("no") == sum(totalseg.num_images(s) for s in SPLITS) == 162


@needs_real
def test_real_site_round_trip_and_pooled(real_federation, tmp_path):
    site = real_federation.client("site-3")
    site.save_npz(tmp_path / "site-3.npz")
    items = load_vqa_split(tmp_path / "site-3.npz", "test", image_size=32, in_channels=3)
    assert len(items) == site.num_questions("test") and items[0]["image"].shape == (3, 32, 32)
    pooled = real_federation.pooled(32)
    assert pooled.num_images("train") == sum(c.num_images("train") for c in real_federation.clients)


@needs_real
def test_real_determinism_and_cap_on_two_small_sources(tmp_path):
    root = _linked(tmp_path / "real", SMALL[:2])
    first = build_vqa_federation("cross_modality_hard", 2, data_dir=root, image_size=32, seed=3)
    second = build_vqa_federation("cross_modality_hard", 2, data_dir=root, image_size=32, seed=3, samples_per_client=0)
    assert all(_same_archives(a, b, tmp_path) for a, b in zip(first.clients, second.clients))
    capped = build_vqa_federation("cross_modality_hard", 2, data_dir=root, image_size=32, seed=3, samples_per_client=3)
    assert [c.num_images("train") for c in capped.clients] == [3, 3]
    assert [c.num_images("test") for c in capped.clients] == [c.num_images("test") for c in first.clients]


@needs_real
@pytest.mark.skipif(not os.environ.get("OMNIFM_RUN_REAL_VQA_FULL"), reason="opt-in: OMNIFM_RUN_REAL_VQA_FULL=1")
def test_real_full_folder_four_sources():
    fed = build_vqa_federation("cross_modality_hard", 4, data_dir=REAL, image_size=32)
    assert fed.sources == ("pyradiomics_brain_mr", "pyradiomics_breast_mr", "pyradiomics_lung_ct", "totalseg_ct")
    lung = fed.client("site-3")
    answers = [p["answer"] for s in SPLITS for p in lung.qa[s] if p["question_type"] == "presence"]
    assert lung.modality == "CT" and answers.count("yes") == answers.count("no") == 14
