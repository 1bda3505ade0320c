"""The omnifm_vqa bundle end to end: metadata, train, evaluate, inference, verify_net_in_out and tracing.

Every test runs from a temporary working directory (not the bundle) and writes under ``tmp_path``; tiny
settings (32 x 32 images, 14 training and 7 validation phantom images, one epoch) keep it short.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata, save_net_with_metadata
from PIL import Image

from omnifm_monai.data.phantom import make_phantom_dataset
from omnifm_monai.data.vqa import VQAVocabularies, phantom_vocabularies

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "omnifm_vqa"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
SCHEMA = str(BUNDLE.parent / "schema" / "bundle_metadata_schema.json")
TINY = {"image_size": 32, "num_samples": 14, "num_val_samples": 7}
REQUIRED_IDS = (
    "dataset_dir", "image_size", "seed", "ckpt_dir", "output_dir", "val_interval", "progress_bar", "spectral",
    "prompt", "num_classes", "in_channels", "network_def", "network", "loss", "optimizer", "train#trainer",
    "validate#evaluator",
)  # fmt: skip


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the bundle tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _eager_network(ckpt: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({"bundle_root": str(BUNDLE), "ckpt_dir": str(ckpt.parent)})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return net.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny centralised training run on the phantom, from a working directory outside the bundle."""
    root = tmp_path_factory.mktemp("vqa_bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _no_network(mp)
        workflow = ConfigWorkflow(
            config_file=TRAIN,
            logging_file=False,
            workflow_type="train",
            bundle_root=str(BUNDLE),
            ckpt_dir=str(root / "models"),
            output_dir=str(root / "eval"),
            epochs=1,
            progress_bar=False,
            **TINY,
        )
        workflow.initialize()
        missing = workflow.check_properties()
        ids = {k: k in workflow.parser for k in REQUIRED_IDS}
        workflow.run()
        workflow.finalize()
    return {"root": root, "ckpt": root / "models" / "model.pt", "missing": missing, "ids": ids}


def test_metadata_validates_offline_and_matches_the_vocabularies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    verify_metadata(meta_file=META, filepath=SCHEMA)
    meta = json.loads(Path(META).read_text())
    assert meta["version"] in meta["changelog"]
    inputs, vocab = meta["network_data_format"]["inputs"], phantom_vocabularies()
    assert set(inputs) == {"image", "question"}
    assert inputs["question"]["spatial_shape"] == [vocab.max_length]
    assert inputs["question"]["value_range"] == [0, vocab.vocab_size - 1]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == vocab.num_answers


def test_train_defines_the_pipeline_ids_and_writes_checkpoint_and_vocabulary(trained):
    assert trained["missing"] == []
    assert all(trained["ids"].values()), trained["ids"]
    assert trained["ckpt"].is_file()
    assert VQAVocabularies.load(trained["ckpt"].parent / "vocab.json").to_dict() == phantom_vocabularies().to_dict()
    assert list((trained["root"] / "eval").glob("events.out.tfevents.*"))
    net = _eager_network(trained["ckpt"])
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32), torch.ones(2, 20, dtype=torch.long)).shape == (2, 40)


def test_evaluate_saves_test_accuracy(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    workflow = ConfigWorkflow(
        config_file=[TRAIN, EVALUATE],
        logging_file=False,
        workflow_type=None,
        bundle_root=str(BUNDLE),
        ckpt_dir=str(trained["ckpt"].parent),
        output_dir=str(tmp_path / "eval"),
        **TINY,
    )
    workflow.initialize()
    assert workflow.parser.get_parsed_content("validate#split") == "test"
    workflow.run()
    workflow.finalize()
    rows = dict(csv.reader((tmp_path / "eval" / "metrics.csv").open(), delimiter=","))
    assert set(rows) == {"val_accuracy"} and 0.0 <= float(rows["val_accuracy"]) <= 1.0


def test_inference_answers_a_question_about_an_image_file(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    image = make_phantom_dataset("CT", 1, image_size=32, seed=5).images[0, 0]  # (32, 32) in [0, 1]
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "ct.png")
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        logging_file=False,
        workflow_type=None,
        bundle_root=str(BUNDLE),
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
    train, infer = json.loads(Path(TRAIN).read_text()), json.loads(Path(INFERENCE).read_text())
    for key in ("network_def", "image_size", "in_channels", "max_question_length", "spectral", "prompt", "device"):
        assert infer[key] == train[key], key


def test_verify_net_in_out_needs_the_question_as_extra_forward_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kwargs = {
        "net_id": "network_def",
        "meta_file": META,
        "config_file": TRAIN,
        "device": "cpu",
        "bundle_root": str(BUNDLE),
    }
    verify_net_in_out(**kwargs, extra_forward_args={"question": [[19, 36, 21, 2]]})
    with pytest.raises(TypeError, match="question"):  # the image alone is not enough
        verify_net_in_out(**kwargs)


def test_tracing_with_both_inputs_gives_the_eager_outputs(trained, tmp_path):
    """What docs/README.md documents instead of ckpt_export (which traces with the image only)."""
    net = _eager_network(trained["ckpt"])
    example = (torch.rand(1, 3, 32, 32), torch.ones(1, 20, dtype=torch.long))
    traced = torch.jit.trace(net, example, check_trace=False)
    save_net_with_metadata(traced, str(tmp_path / "model"), meta_values=json.loads(Path(META).read_text()))
    loaded, meta, _ = load_net_with_metadata(str(tmp_path / "model.ts"))
    assert meta["name"] == "OmniFM visual question answering"
    image, question = torch.rand(3, 3, 32, 32), torch.randint(0, phantom_vocabularies().vocab_size, (3, 20))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(image, question).numpy(), net(image, question).numpy(), atol=1e-5)
