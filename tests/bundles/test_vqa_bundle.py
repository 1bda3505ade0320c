"""The omnifm_vqa bundle end to end: metadata, train, evaluate, inference, verify_net_in_out and tracing.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``; tiny
settings (32 x 32 images, 14 training and 7 validation phantom images, one epoch) keep it short.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_checks import (
    Bundle,
    assert_inference_matches_training,
    assert_training_record,
    eager_network,
    no_network,
    run_evaluation,
    train_tiny,
    verify_metadata_offline,
)
from monai.bundle import ConfigWorkflow, verify_net_in_out
from monai.data import load_net_with_metadata
from PIL import Image

from omnifm_monai.data.phantom import make_phantom_dataset
from omnifm_monai.data.vqa_vocabulary import VQAVocabularies, phantom_vocabularies

BUNDLE = Bundle("omnifm_vqa")
TINY = {"image_size": 32, "num_samples": 14, "num_val_samples": 7}
REQUIRED_IDS = (
    "dataset_dir", "image_size", "seed", "ckpt_dir", "output_dir", "val_interval", "progress_bar", "spectral",
    "prompt", "num_classes", "in_channels", "network_def", "network", "loss", "optimizer", "train#trainer",
    "validate#evaluator",
)  # fmt: skip


def _eager_network(ckpt: Path) -> torch.nn.Module:
    return eager_network(BUNDLE, ckpt, ckpt_dir=str(ckpt.parent))  # the vocabularies sit next to the checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    return train_tiny(
        BUNDLE,
        tmp_path_factory.mktemp("vqa_bundle"),
        TINY,
        progress_bar=False,
        before_run=lambda workflow: {"ids": {k: k in workflow.parser for k in REQUIRED_IDS}},
    )


def test_metadata_validates_offline_and_matches_the_vocabularies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    meta = verify_metadata_offline(BUNDLE)
    inputs, vocab = meta["network_data_format"]["inputs"], phantom_vocabularies()
    assert set(inputs) == {"image", "question"}
    assert inputs["question"]["spatial_shape"] == [vocab.max_length]
    assert inputs["question"]["value_range"] == [0, vocab.vocab_size - 1]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == vocab.num_answers


def test_train_defines_the_pipeline_ids_and_writes_checkpoint_and_vocabulary(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert trained["ckpt"].is_file()
    meta = assert_training_record(trained, "vqa", {"image_size": 32, "num_classes": 40, "max_question_length": 20})
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 40
    assert VQAVocabularies.load(trained["ckpt"].parent / "vocab.json").to_dict() == phantom_vocabularies().to_dict()
    assert list((trained["root"] / "eval" / "tensorboard").glob("*/events.out.tfevents.*"))  # one folder per run
    net = _eager_network(trained["ckpt"])
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32), torch.ones(2, 20, dtype=torch.long)).shape == (2, 40)


def test_evaluate_saves_test_accuracy(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    split, rows = run_evaluation(BUNDLE, trained["ckpt"], tmp_path / "eval", TINY)
    assert split == "test"
    assert set(rows) == {"val_accuracy"} and 0.0 <= float(rows["val_accuracy"]) <= 1.0


def test_inference_answers_a_question_about_an_image_file(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    no_network(monkeypatch)
    image = make_phantom_dataset("CT", 1, image_size=32, seed=5).images[0, 0]  # (32, 32) in [0, 1]
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "ct.png")
    workflow = ConfigWorkflow(
        config_file=BUNDLE.inference,
        logging_file=False,
        workflow_type=None,
        bundle_root=str(BUNDLE.root),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(tmp_path / "out"),
        image_file=str(tmp_path / "ct.png"),
        question="What imaging modality is shown?",
        image_size=32,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    answers = json.loads((tmp_path / "out" / "answers.json").read_text())
    assert len(answers) == 1 and answers[0]["answer"] in phantom_vocabularies().answers.answers
    assert 0.0 < answers[0]["probability"] <= 1.0
    assert f"A: {answers[0]['answer']}" in capsys.readouterr().out


def test_inference_network_matches_training():
    keys = ("network_def", "image_size", "in_channels", "max_question_length", "spectral", "prompt", "device")
    assert_inference_matches_training(BUNDLE, keys)


def test_verify_net_in_out_needs_the_question_as_extra_forward_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kwargs = {
        "net_id": "network_def",
        "meta_file": BUNDLE.meta,
        "config_file": BUNDLE.train,
        "device": "cpu",
        "bundle_root": str(BUNDLE.root),
    }
    verify_net_in_out(**kwargs, extra_forward_args={"question": [[19, 36, 21, 2]]})
    with pytest.raises(TypeError, match="question"):  # the image alone is not enough
        verify_net_in_out(**kwargs)


def test_export_config_traces_both_inputs_and_embeds_metadata_and_vocabularies(trained, tmp_path, monkeypatch):
    """configs/export.json: what ckpt_export cannot do for a two-input network (it traces with the image only)."""
    monkeypatch.chdir(tmp_path)
    ckpt_dir = trained["ckpt"].parent
    workflow = ConfigWorkflow(
        config_file=[BUNDLE.inference, str(BUNDLE.configs / "export.json")],
        workflow_type=None,
        logging_file=False,
        bundle_root=str(BUNDLE.root),
        ckpt_dir=str(ckpt_dir),
        ts_file=str(tmp_path / "model.ts"),
    )
    workflow.initialize()
    workflow.run()
    extra = ("inference.json", "vocab.json")
    loaded, meta, files = load_net_with_metadata(str(tmp_path / "model.ts"), more_extra_files=extra)
    assert meta["training"]["config"]["image_size"] == 32  # the checkpoint's record, not the bundle's 64
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == phantom_vocabularies().num_answers
    assert VQAVocabularies.from_dict(json.loads(files["vocab.json"])).to_dict() == phantom_vocabularies().to_dict()
    image, question = torch.rand(3, 3, 32, 32), torch.randint(0, phantom_vocabularies().vocab_size, (3, 20))
    net = _eager_network(trained["ckpt"])
    with torch.no_grad():  # another batch size than the trace's
        np.testing.assert_allclose(loaded(image, question).numpy(), net(image, question).numpy(), atol=1e-5)
