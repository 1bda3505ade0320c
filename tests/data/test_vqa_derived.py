"""Tests of the derived VQA set (omnifm_monai.data.vqa_derived) on small synthetic MSD folders."""

from __future__ import annotations

import json

import pytest

from omnifm_monai.data.vqa import load_vqa_split, read_vqa_json
from omnifm_monai.data.vqa_derived import derived_entries, derived_vocabularies, main, read_derived_source


def test_lesion_source_is_balanced_split_by_scan_and_located(msd_root):
    # Prepare / Execute: 3 volumes -> whole scans per split; 2 lesion slices + 2 empty ones per volume
    source = read_derived_source(msd_root / "lesion_mr", image_size=32, seed=0)
    entries = derived_entries(source, seed=0)
    # Assert
    assert source.split_rule == "by scan"
    volumes = {s: {e["volume"] for e in entries[s]} for s in entries}
    assert all(len(v) == 1 for v in volumes.values()) and len(set.union(*volumes.values())) == 3
    for split in entries:
        presence = [e["answer"] for e in entries[split] if e["content_type"] == "presence"]
        assert sorted(presence) == ["no", "no", "yes", "yes"]
        assert len(entries[split]) == 4 + 4 + 2  # modality + presence per slice, location per lesion slice
        located = {e["slice"]: e["answer"] for e in entries[split] if e["content_type"] == "location"}
        assert located == {2: "upper left", 3: "upper left"}
        assert {e["answer"] for e in entries[split] if e["content_type"] == "modality"} == {"mri"}
        assert all(e["source"].startswith("derived from lesion_mr masks") for e in entries[split])
    assert {img.shape for _, _, img, _, _ in source.slices} == {(32, 32)}


def test_organ_source_questions_and_z_slabs(msd_root):
    # Prepare / Execute: one volume of 10 slices -> z slabs 6/2/2 from the lowest S position
    source = read_derived_source(msd_root / "organs_ct", image_size=16, seed=0)
    entries = derived_entries(source, seed=0)
    # Assert
    assert source.split_rule == "z slabs"
    assert {s: sorted({e["slice"] for e in entries[s]}) for s in entries} == {
        "train": [0, 1, 2, 3, 4, 5],
        "val": [6, 7],
        "test": [8, 9],
    }
    every = [e for split in entries.values() for e in split]
    presence = [(e["question"], e["answer"]) for e in every if e["content_type"] == "organ_presence"]
    assert {a for q, a in presence if "kidney" in q} == {"no"} and {a for q, a in presence if "kidney" not in q} == {
        "yes"
    }
    assert sum(a == "yes" for _, a in presence) == sum(a == "no" for _, a in presence) == 10
    for e in every:
        if e["content_type"] == "organ_location":
            assert e["answer"] == ("upper left" if "liver" in e["question"] else "lower right")
        if e["content_type"] == "organ_at_position":
            assert (e["question"], e["answer"]) in {
                ("Which organ is at the centre of the upper left quadrant of the image?", "liver"),
                ("Which organ is at the centre of the lower right quadrant of the image?", "spleen"),
            }
    assert {e["answer"] for e in every if e["content_type"] == "largest_organ"} == {"liver"}
    vocab = derived_vocabularies([source])
    assert all(e["answer"] in vocab.answers for e in every)
    assert all(vocab.tokenizer.encode(e["question"]).tolist().count(1) == 0 for e in every)  # no <unk>


def test_cli_writes_a_slake_folder_the_bundle_reads(msd_root, tmp_path, capsys):
    # Execute
    main(["--from", str(msd_root), "--out", str(tmp_path / "out"), "--image-size", "32"])
    # Assert: the SLAKE reader and the bundle's folder loader read it
    folder = tmp_path / "out" / "organs_ct"
    assert {p.name for p in folder.iterdir()} >= {"imgs", "train.json", "validate.json", "test.json", "README.md"}
    images, qa = read_vqa_json(folder / "train.json", folder / "imgs", image_size=32, in_channels=1)
    assert images.shape == (6, 1, 32, 32) and len(qa) == len(json.loads((folder / "train.json").read_text()))
    items = load_vqa_split(folder, "test", image_size=32, in_channels=3)
    assert items and items[0]["image"].shape == (3, 32, 32)
    assert "lesion_mr: questions train/val/test 10/10/10" in capsys.readouterr().out


def test_a_folder_without_dataset_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        main(["--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
