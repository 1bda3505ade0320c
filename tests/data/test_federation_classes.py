"""One label map per federation: a site's classes checked against the federation's and renumbered onto them,
in the data loader and at a federated site's start (``SiteTrainer``), whose start-up error is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.classification import load_classification_split
from omnifm_monai.data.federation_classes import (
    decode_class_names,
    encode_class_names,
    federation_label_ids,
    held_classes,
    parse_class_names,
)
from omnifm_monai.flare.client import SiteTrainer, parse_args, start_error
from omnifm_monai.jobs import bundle_root
from omnifm_monai.tasks import get_task

FEDERATION = ("CT", "MR", "X-ray")


def write_class_folders(root: Path, classes: tuple[str, ...], per_class: int = 2, size: int = 16) -> Path:
    """``root/<split>/<class>/<i>.png``: tiny gray PNGs, each class its own brightness."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(40 + 60 * c, 10, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_class_names_from_a_list_a_json_file_or_lines(tmp_path):
    # Prepare
    (tmp_path / "names.json").write_text(json.dumps({"class_names": list(FEDERATION)}))
    (tmp_path / "names.txt").write_text("CT\nMR\n\nX-ray\n")
    # Execute / Assert
    assert parse_class_names("CT, MR,X-ray") == FEDERATION
    assert parse_class_names(tmp_path / "names.json") == FEDERATION
    assert parse_class_names(str(tmp_path / "names.txt")) == FEDERATION
    with pytest.raises(ValueError, match="more than once"):
        parse_class_names("CT,MR,CT")
    # one command-line word even with spaces and commas in a name
    word = encode_class_names(["chest X ray", "a,b"])
    assert " " not in word and decode_class_names(word) == ("chest X ray", "a,b")


def test_a_site_missing_a_class_gets_the_federation_ids(tmp_path):
    # Prepare: a site with folders {CT, X-ray} in the federation (CT, MR, X-ray)
    site = write_class_folders(tmp_path / "site-2", ("CT", "X-ray"))
    # Execute
    own = load_classification_split(site, "train", image_size=16, in_channels=1)
    mapped = load_classification_split(site, "train", image_size=16, in_channels=1, class_names=FEDERATION)
    # Assert: alone the site calls X-ray 1; in the federation it is 2, as at every other site
    assert sorted({int(d["label"]) for d in own}) == [0, 1]
    assert sorted({int(d["label"]) for d in mapped}) == [0, 2]
    np.testing.assert_array_equal(np.stack([d["image"] for d in own]), np.stack([d["image"] for d in mapped]))
    assert federation_label_ids(held_classes(site), FEDERATION, where="site-2") == {0: 0, 1: 2}
    line = get_task("classification").check_site_classes(str(site), FEDERATION, "site-2")
    assert "federation ids [0, 2]" in line and "'MR'" in line


def test_a_site_with_a_class_the_federation_lacks_is_refused_in_one_line(tmp_path):
    site = write_class_folders(tmp_path / "site-3", ("CT", "PET"))
    with pytest.raises(ValueError) as error:
        get_task("classification").check_site_classes(str(site), FEDERATION, "site-3")
    message = str(error.value)
    assert "\n" not in message and message.startswith("site-3: classes ['PET']")
    assert "['CT', 'PET']" in message and "['CT', 'MR', 'X-ray']" in message
    with pytest.raises(ValueError, match="PET"):
        load_classification_split(site, "test", image_size=16, in_channels=1, class_names=FEDERATION)


def test_segmentation_labels_must_name_the_same_value_everywhere():
    task = get_task("segmentation")
    names = task.data_class_names("phantom")
    assert "match" in task.check_site_classes("phantom", names, "site-1")
    with pytest.raises(ValueError, match="site-1: label values name"):
        task.check_site_classes("phantom", tuple(reversed(names)), "site-1")


# ---- at a federated site's start ------------------------------------------------------------------


def _site_args(dataset_dir, site_dir, class_names=FEDERATION):
    return parse_args(
        [
            "--bundle-root", str(bundle_root("classification")), "--strategy", "fedavg",
            "--dataset-dir", str(dataset_dir), "--class-names", encode_class_names(class_names),
            "--image-size", "16", "--site-dir", str(site_dir), "--bundle-overrides", json.dumps({"batch_size": 4}),
        ]
    )  # fmt: skip


def test_a_site_missing_a_class_trains_in_the_federation_label_space(tmp_path):
    # Prepare: the site has no MR folder
    data = write_class_folders(tmp_path / "data", ("CT", "X-ray"))
    # Execute
    site = SiteTrainer(_site_args(data, tmp_path / "site"), "site-2")
    # Assert: three outputs, and X-ray is id 2 in training and in the test metrics' label space
    assert site.network.task_head.out_features == len(FEDERATION)
    assert sorted({int(d["label"]) for d in site.trainer.data_loader.dataset.data}) == [0, 2]
    metrics = site.evaluate()
    assert 0.0 <= metrics["restricted_accuracy"] <= 1.0
    assert 0.0 <= metrics["val_restricted_accuracy"] <= 1.0  # the validation split, scored the same way


def test_a_site_with_a_foreign_class_is_refused_before_training(tmp_path):
    data = write_class_folders(tmp_path / "data", ("CT", "PET"))
    with pytest.raises(ValueError) as error:
        SiteTrainer(_site_args(data, tmp_path / "site"), "site-3")
    line = start_error("site-3", error.value)
    assert line.startswith("site-3 failed at start: classes ['PET'] are not in the federation's label map")
    assert "\n" not in line


def test_a_missing_dataset_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        SiteTrainer(_site_args(tmp_path / "nowhere", tmp_path / "site"), "site-1")
    assert start_error("site-1", error.value) == (
        f"site-1 failed at start: --dataset-dir '{tmp_path / 'nowhere'}' does not exist on this site."
    )


def test_the_root_cause_of_a_config_engine_error_is_kept():
    try:
        try:
            raise ValueError("'x.png' is not an image")
        except ValueError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression(...)") from e
    except RuntimeError as wrapped:
        assert start_error("site-1", wrapped) == "site-1 failed at start: 'x.png' is not an image"
