"""Tests of classification labels from files: datalist JSON and CSV readers, and the stratified, grouped split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.classification import class_names_for, load_classification_split
from omnifm_monai.data.label_files import read_label_file, stratified_split


def _images(root: Path, count: int) -> list[str]:
    """``count`` tiny gray PNGs under ``root/img``; their paths relative to ``root``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / "img" / f"{i}.png")
    return [f"img/{i}.png" for i in range(count)]


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _split_of(label_file) -> dict[str, str]:
    return {p.name: split for split, items in label_file.items.items() for p, _ in items}


# ---- stratified_split ---------------------------------------------------------------------------------


def test_stratified_split_hand_counts_per_label():
    # Prepare: 10 items of label 0, 5 of label 1, no groups
    labels = [0] * 10 + [1] * 5
    # Execute
    parts = stratified_split(labels, seed=0)
    # Assert: label 0 -> 6/2/2, label 1 -> round(3)=3, round(4)-3=1, 1
    counts = {label: np.bincount(parts[np.asarray(labels) == label], minlength=3).tolist() for label in (0, 1)}
    assert counts == {0: [6, 2, 2], 1: [3, 1, 1]}


def test_stratified_split_is_seeded():
    labels = np.arange(40) % 3
    np.testing.assert_array_equal(stratified_split(labels, seed=3), stratified_split(labels, seed=3))
    assert not np.array_equal(stratified_split(labels, seed=3), stratified_split(labels, seed=4))


def test_stratified_split_keeps_each_group_together():
    # Prepare: 12 patients of 1-4 images each, the label by patient
    rng = np.random.default_rng(1)
    groups = [f"p{p}" for p in range(12) for _ in range(1 + p % 4)]
    labels = [int(g[1:]) % 2 for g in groups]
    # Execute
    parts = stratified_split(labels, groups, seed=rng.integers(100))
    # Assert: one part per patient; every label in training
    for patient in set(groups):
        assert len({int(parts[i]) for i, g in enumerate(groups) if g == patient}) == 1
    assert {labels[i] for i in np.flatnonzero(parts == 0)} == {0, 1}


# ---- CSV ----------------------------------------------------------------------------------------------


def test_csv_unsplit_with_patients_is_split_by_patient_and_stratified(tmp_path):
    images = _images(tmp_path, 30)
    rows = [[image, ["benign", "malignant"][i % 2], f"p{i // 2}"] for i, image in enumerate(images)]
    listing = _csv(tmp_path / "labels.csv", ["image", "label", "patient_id"], rows)
    label_file = read_label_file(listing, seed=0)
    assert label_file.class_names == ("benign", "malignant") == class_names_for(listing)
    split = _split_of(label_file)
    for p in range(15):  # images 2p and 2p+1 belong to patient p
        assert split[f"{2 * p}.png"] == split[f"{2 * p + 1}.png"]
    assert {s: len(items) for s, items in label_file.items.items()} == {"train": 18, "val": 6, "test": 6}
    assert {label for _, label in label_file.items["test"]} == {0, 1}
    assert _split_of(read_label_file(listing, seed=0)) == split  # seeded
    assert _split_of(read_label_file(listing, seed=1)) != split


def test_csv_with_split_column_keeps_it_and_reads_arrays(tmp_path):
    images = _images(tmp_path, 6)
    splits = ["train", "train", "validation", "test", "train", "val"]
    rows = [[image, i % 3, s] for i, (image, s) in enumerate(zip(images, splits))]
    listing = _csv(tmp_path / "labels.csv", ["image", "label", "split"], rows)
    assert class_names_for(listing) == ("class_0", "class_1", "class_2")
    items = load_classification_split(listing, "val", image_size=16, in_channels=1)
    assert [int(d["label"]) for d in items] == [2, 2]
    assert items[0]["image"].shape == (1, 16, 16) and items[0]["image"].dtype == np.float32


def test_json_only_training_is_split_and_names_int_labels(tmp_path):
    images = _images(tmp_path / "site", 20)
    datalist = {
        "labels": {"0": "normal", "1": "tumour"},
        "training": [{"image": x, "label": i % 2} for i, x in enumerate(images)],
    }
    (tmp_path / "site" / "datalist.json").write_text(json.dumps(datalist))
    listing = tmp_path / "site" / "datalist.json"
    label_file = read_label_file(listing)
    assert class_names_for(listing) == ("normal", "tumour")
    assert {s: len(items) for s, items in label_file.items.items()} == {"train": 12, "val": 4, "test": 4}


def test_json_with_training_and_test_carves_only_validation(tmp_path):
    images = _images(tmp_path, 12)
    datalist = {
        "training": [{"image": x, "label": ["a", "b"][i % 2]} for i, x in enumerate(images[:8])],
        "test": [{"image": x, "label": "a"} for x in images[8:]],
    }
    (tmp_path / "d.json").write_text(json.dumps(datalist))
    label_file = read_label_file(tmp_path / "d.json")
    assert [p.name for p, _ in label_file.items["test"]] == ["8.png", "9.png", "10.png", "11.png"]
    assert len(label_file.items["train"]) == 6 and len(label_file.items["val"]) == 2  # 0.6 : 0.2 of the 8


def test_json_class_name_that_names_a_file_stays_a_name(tmp_path):
    images = _images(tmp_path, 2)
    (tmp_path / "img" / "benign").mkdir()  # MONAI would turn the label "benign" into this path
    datalist = {
        "training": [{"image": images[0], "label": "benign"}],
        "test": [{"image": images[1], "label": "benign"}],
    }
    (tmp_path / "d.json").write_text(json.dumps(datalist))
    assert class_names_for(tmp_path / "d.json") == ("benign",)


# ---- bad input: one line naming the file and the row ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["image", "label"], ["img/missing.png", "0"], r"row 2: image '.*missing.png' is not an existing file"),
        (["image", "label", "age"], ["img/0.png", "0", "50"], r"unknown: \['age'\]"),
        (["image", "label"], ["img/0.png", "1.5"], r"row 2: label '1.5' is neither a class id"),
        (["image", "label"], ["img/0.png", ""], r"row 2: label '' is neither"),
        (["image", "label", "split"], ["img/0.png", "0", "holdout"], r"row 2: split 'holdout' is not one of"),
    ],
    ids=["missing-file", "unknown-column", "float-label", "empty-label", "bad-split"],
)
def test_bad_csv_rows_name_the_file_and_row(tmp_path, header, row, message):
    _images(tmp_path, 1)
    listing = _csv(tmp_path / "labels.csv", header, [row])
    with pytest.raises(ValueError, match=message) as error:
        read_label_file(listing)
    assert "labels.csv" in str(error.value) and "\n" not in str(error.value)


def test_mixed_ids_and_names_are_refused(tmp_path):
    images = _images(tmp_path, 2)
    listing = _csv(tmp_path / "labels.csv", ["image", "label"], [[images[0], "0"], [images[1], "benign"]])
    with pytest.raises(ValueError, match="row 2: label 0 is a class id but .*row 3 names a class"):
        class_names_for(listing)


def test_bad_json_entries(tmp_path):
    images = _images(tmp_path, 1)
    (tmp_path / "a.json").write_text(json.dumps({"validation": []}))
    with pytest.raises(ValueError, match="no 'training' list"):
        read_label_file(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"training": [{"image": images[0]}]}))
    with pytest.raises(ValueError, match=r"training\[0\]: no 'label'"):
        read_label_file(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"training": [{"image": images[0], "label": [0, 1]}]}))
    with pytest.raises(ValueError, match=r"training\[0\]: label \[0, 1\] is neither"):
        read_label_file(tmp_path / "c.json")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read .*d.json"):
        read_label_file(tmp_path / "d.json")
    (tmp_path / "e.json").write_text(
        json.dumps({"labels": {"benign": 0}, "training": [{"image": images[0], "label": 0}]})
    )
    with pytest.raises(ValueError, match=r"'labels' keys \['benign'\] are not class ids"):
        read_label_file(tmp_path / "e.json")


def test_csv_saved_by_excel_with_a_byte_order_mark(tmp_path):
    images = _images(tmp_path, 2)
    (tmp_path / "excel.csv").write_bytes(f"\ufeffimage,label\n{images[0]},a\n{images[1]},b\n".encode())
    assert class_names_for(tmp_path / "excel.csv") == ("a", "b")
