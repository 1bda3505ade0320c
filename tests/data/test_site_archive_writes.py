"""A site's cached archive is written whole or not at all (a simulator may end a site's turn mid-write)."""

import numpy as np
import pytest


def test_a_write_stopped_half_way_leaves_the_last_whole_archive_and_no_partial_file(tmp_path, monkeypatch):
    from omnifm_monai.data import site_archive

    path = tmp_path / "site" / "data_classification.npz"
    site_archive.save_site_archive(path, {"train_images": np.zeros((2, 4, 4), np.uint8)}, {"name": "first"})
    real_savez = np.savez_compressed

    def stopped_half_way(f, **contents):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # the turn ended (the runner's SIGTERM) while numpy was writing

    monkeypatch.setattr(site_archive.np, "savez_compressed", stopped_half_way)
    with pytest.raises(KeyboardInterrupt):
        site_archive.save_site_archive(path, {"train_images": np.ones((3, 4, 4), np.uint8)}, {"name": "second"})
    monkeypatch.setattr(site_archive.np, "savez_compressed", real_savez)
    arrays = site_archive.load_site_archive(path)  # the earlier archive, whole
    assert arrays["train_images"].shape == (2, 4, 4) and str(arrays["name"]) == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data_classification.npz"]


def test_a_medmnist_layout_archive_goes_through_the_same_whole_write(tmp_path, monkeypatch):
    from omnifm_monai.data import site_archive
    from omnifm_monai.data.medmnist import load_medmnist
    from omnifm_monai.tasks import get_task

    federation = get_task("classification").build_federation(
        "cross_modality_hard", 2, seed=0, data_dir=None, image_size=16, samples_per_client=20
    )
    path = tmp_path / "site-1.npz"
    written = []
    real = site_archive.save_site_archive
    monkeypatch.setattr("omnifm_monai.data.medmnist.save_site_archive", lambda *a: written.append(a) or real(*a))
    federation.clients[0].save_npz(path)
    assert written and load_medmnist(path).splits["train"][0].shape[0] > 0
