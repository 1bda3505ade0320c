"""VQA data: tokenizer, answer vocabulary, phantom split rule, SLAKE JSON reader, site archives, federation."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from omnifm_monai.data.federation import build_vqa_federation
from omnifm_monai.data.phantom import MODALITIES
from omnifm_monai.data.vqa import HELD_OUT, load_vqa_npz, load_vqa_split, read_vqa_json, vocabularies_for
from omnifm_monai.data.vqa_vocabulary import AnswerVocabulary, QuestionTokenizer, VQAVocabularies, phantom_vocabularies

# ---- tokenizer and vocabularies -------------------------------------------------------------------------


def test_tokenizer_round_trip_and_unknown_words(tmp_path):
    tok = QuestionTokenizer.fit(["Is there a lesion?", "What modality, CT or X-ray?"], max_length=8)
    assert tok.itos[:2] == ["<pad>", "<unk>"]
    ids = tok.encode("Is there a lesion?")
    assert ids.dtype == np.int64 and ids.shape == (8,)
    assert tok.decode(ids) == "is there a lesion ?"
    assert "x-ray" in tok.stoi and "," in tok.stoi  # hyphenated words whole, punctuation split
    unknown = tok.encode("Is there a TUMOUR?")
    assert unknown[3] == 1 and tok.decode(unknown) == "is there a <unk> ?"
    assert tok.encode("a " * 20).tolist() == [tok.stoi["a"]] * 8  # truncated to max_length
    tok.save(tmp_path / "tok.json")
    assert QuestionTokenizer.load(tmp_path / "tok.json") == tok


def test_tokenizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_length"):
        QuestionTokenizer(["a"], max_length=0)
    with pytest.raises(ValueError, match="unique"):
        QuestionTokenizer(["a", "a"])


def test_answer_vocabulary_normalises_and_saves(tmp_path):
    vocab = AnswerVocabulary.fit(["Yes", "no", " Solid_Tumour. ", "yes"])
    assert vocab.answers == ["no", "solid tumour", "yes"]
    assert vocab.index("YES ") == 2 and "solid  tumour" in vocab
    assert vocab.index("maybe", default=-1) == -1
    with pytest.raises(KeyError, match="maybe"):
        vocab.index("maybe")
    vocab.save(tmp_path / "answers.json")
    assert AnswerVocabulary.load(tmp_path / "answers.json") == vocab
    both = VQAVocabularies(QuestionTokenizer.fit(["a b"]), vocab)
    both.save(tmp_path / "sub" / "vocab.json")
    assert VQAVocabularies.load(tmp_path / "sub" / "vocab.json").to_dict() == both.to_dict()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        VQAVocabularies.load(tmp_path / "missing.json")


def test_phantom_vocabularies_are_global_and_cover_the_generator():
    vocab = phantom_vocabularies()
    assert vocab.to_dict() == phantom_vocabularies.__wrapped__().to_dict()  # rebuilt from scratch: identical
    items = load_vqa_split("", "test", image_size=32, num_samples=28, seed=3)
    assert all(int(d["label"]) >= 0 for d in items)  # every generated answer is in the vocabulary
    assert all(1 not in d["question"].tolist() for d in items)  # no unknown question word


# ---- phantom split --------------------------------------------------------------------------------------


def test_phantom_items_and_held_out_combinations():
    train = load_vqa_split("", "train", image_size=32, num_samples=14, seed=0)
    test = load_vqa_split("", "test", image_size=32, num_samples=14, seed=0)
    item = train[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == np.float32
    assert item["question"].dtype == np.int64 and item["question"].shape == (20,)
    assert item["answer_type"] in ("closed", "open") and isinstance(item["question_type"], str)
    # by image: no test image is a training image
    train_images = {d["image"].tobytes() for d in train}
    assert not any(d["image"].tobytes() in train_images for d in test)
    # held-out (question type, modality) combinations: absent from train, present in test
    vocab = phantom_vocabularies()

    def combos(items):
        by_image = {}
        for d in items:
            by_image.setdefault(d["image"].tobytes(), []).append(d)
        out = set()
        for questions in by_image.values():
            modality = [vocab.answers.answer(q["label"]) for q in questions if q["question_type"] == "modality"]
            out |= {(q["question_type"], modality[0]) for q in questions}
        return out

    names = dict(
        zip(MODALITIES, ["ct", "t1-weighted mri", "t2-weighted mri", "pet", "x-ray", "ultrasound", "pathology"])
    )
    held = {(t, names[m]) for t, m in HELD_OUT}
    assert not combos(train) & held
    assert combos(test) & held == held


def test_load_vqa_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_vqa_split("", "training")
    with pytest.raises(ValueError, match="in_channels"):
        load_vqa_split("", "train", in_channels=2)


# ---- SLAKE / VQA-RAD folders ----------------------------------------------------------------------------


def _slake_folder(root):
    rng = np.random.default_rng(0)
    for name in ("xmlab1", "xmlab2", "xmlab3"):
        (root / "imgs" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(root / "imgs" / name / "source.jpg")
    (root / "imgs" / "xmlab3" / "source.jpg").write_bytes(b"\xff\xd8\xffnot a jpeg")  # unreadable

    def entry(img, q, a, kind, lang="en"):
        return {"img_name": f"{img}/source.jpg", "question": q, "answer": a, "answer_type": kind,
                "q_lang": lang, "content_type": "Modality" if "modality" in q else "Organ"}  # fmt: skip

    train = [
        entry("xmlab1", "What modality is used?", "CT", "OPEN"),
        entry("xmlab1", "Does the picture contain liver?", "Yes", "CLOSED"),
        entry("xmlab2", "What modality is used?", "MRI", "OPEN"),
        entry("xmlab2", "图片里有肝脏吗?", "是", "CLOSED", lang="zh"),
        entry("xmlab3", "Does the picture contain lung?", "No", "CLOSED"),
    ]
    test = [entry("xmlab2", "Does the picture contain kidney?", "No", "CLOSED"),
            entry("xmlab1", "What modality is used?", "X-Ray", "OPEN")]  # fmt: skip
    (root / "train.json").write_text(json.dumps(train, ensure_ascii=False))
    (root / "validate.json").write_text(json.dumps(test))
    (root / "test.json").write_text(json.dumps(test))
    return root


def test_slake_json_reader_skips_bad_images_with_a_warning(tmp_path, caplog):
    folder = _slake_folder(tmp_path / "slake")
    with caplog.at_level(logging.WARNING, logger="omnifm_monai.data.vqa"):
        images, qa = read_vqa_json(folder / "train.json", folder / "imgs", image_size=16)
    assert images.shape == (2, 3, 16, 16)
    assert [p["question"] for p in qa] == [
        "What modality is used?",
        "Does the picture contain liver?",
        "What modality is used?",
    ]  # the Chinese entry and the unreadable image's question are gone
    assert [p["answer_type"] for p in qa] == ["open", "closed", "open"]
    assert qa[0]["question_type"] == "modality"
    assert any("xmlab3" in r.getMessage() and "source.jpg" in r.getMessage() for r in caplog.records)


def test_slake_folder_datalist_and_vocabularies(tmp_path):
    folder = _slake_folder(tmp_path / "slake")
    vocab = vocabularies_for(folder)
    assert vocab.answers.answers == ["ct", "mri", "no", "yes"]  # from the training split (en only)
    train = load_vqa_split(folder, "train", image_size=16)
    test = load_vqa_split(folder, "test", image_size=16)
    assert len(train) == 3 and {int(d["label"]) for d in train} <= set(range(4))
    labels = [int(d["label"]) for d in test]
    assert labels == [vocab.answers.index("no"), -1]  # "x-ray" was never a training answer


# ---- site archives and federations ----------------------------------------------------------------------


def test_federation_is_modality_specific_and_round_trips(tmp_path):
    fed = build_vqa_federation("modality_specific", 8, seed=1, image_size=16, samples_per_client=10)
    assert [c.name for c in fed.clients] == [f"site-{i}" for i in range(1, 9)]
    assert [c.modality for c in fed.clients] == [*MODALITIES, MODALITIES[0]]
    assert fed.num_classes == len(phantom_vocabularies().answers)
    assert "| site-8 " in fed.summary() and fed.summary().count("\n") >= 10
    site = fed.client("site-7")  # pathology: RGB
    assert site.images["train"].shape == (6, 16, 16, 3)
    site.save_npz(tmp_path / "site.npz")
    back = load_vqa_npz(tmp_path / "site.npz")
    assert back.qa == site.qa and back.vocabularies.to_dict() == fed.vocabularies.to_dict()
    items = load_vqa_split(tmp_path / "site.npz", "test", image_size=16)
    assert len(items) == site.num_questions("test") and items[0]["image"].shape == (3, 16, 16)
    train = load_vqa_split(tmp_path / "site.npz", "train", image_size=16)
    held_type = next(t for t, m in HELD_OUT if m == "PATHOLOGY")
    assert not any(d["question_type"] == held_type for d in train)  # held out of pathology's training split
    assert any(d["question_type"] == held_type for d in items)
    with pytest.raises(KeyError, match="site-9"):
        fed.client("site-9")


def test_federation_same_arguments_same_sites_and_errors():
    a = build_vqa_federation("iid", 2, seed=0, image_size=16, samples_per_client=7)
    b = build_vqa_federation("iid", 2, seed=0, image_size=16, samples_per_client=7)
    np.testing.assert_array_equal(a.clients[1].images["val"], b.clients[1].images["val"])
    assert a.clients[0].modality == "+".join(MODALITIES)
    hard = build_vqa_federation("cross_modality_hard", 2, seed=0, image_size=16, samples_per_client=7)
    assert [c.modality for c in hard.clients] == ["CT", "MR-T1"]  # the job's default: modality-specific
    with pytest.raises(ValueError, match="scenario"):
        build_vqa_federation("label_skew", 2)
    with pytest.raises(FileNotFoundError, match="/data/medmnist"):  # a folder means the derived federation
        build_vqa_federation("cross_modality_hard", 2, data_dir="/data/medmnist")
    with pytest.raises(ValueError, match="num_clients"):
        build_vqa_federation("iid", 0)


def test_npz_of_another_kind_is_rejected(tmp_path):
    np.savez(tmp_path / "other.npz", train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="not a VQA site archive"):
        load_vqa_npz(tmp_path / "other.npz")
