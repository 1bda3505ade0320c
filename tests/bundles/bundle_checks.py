"""Checks every bundle test shares: offline runs of ``monai.bundle`` from a working directory outside the bundle.

The test files import these plain functions; each test keeps its own assertions on what they return.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import hashlib
import json
import logging
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@dataclass(frozen=True)
class Bundle:
    """The files of ``bundles/<name>`` (config paths as ``str``, as ``monai.bundle`` takes them)."""

    name: str

    @property
    def root(self) -> Path:
        return BUNDLES / self.name

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def meta(self) -> str:
        return str(self.configs / "metadata.json")

    @property
    def train(self) -> str:
        return str(self.configs / "train.json")

    @property
    def evaluate(self) -> str:
        return str(self.configs / "evaluate.json")

    @property
    def inference(self) -> str:
        return str(self.configs / "inference.json")

    @property
    def schema(self) -> str:
        return str(BUNDLES / "schema" / "bundle_metadata_schema.json")


def no_network(monkeypatch) -> None:
    """Make every socket connection fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the bundle tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@contextlib.contextmanager
def bundle_logging(bundle: Bundle) -> Iterator[str]:
    """The bundle's ``logging.conf`` (it must pass MONAI's checks); pytest's root logging is put back afterwards."""
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    try:
        yield str(bundle.configs / "logging.conf")
    finally:
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def eager_network(bundle: Bundle, ckpt: Path, **overrides) -> torch.nn.Module:
    """The inference config's ``network_def`` with the trained weights, in eval mode."""
    parser = ConfigParser()
    parser.read_config(bundle.inference)
    parser.update({"bundle_root": str(bundle.root), **overrides})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return net.eval()


def train_tiny(
    bundle: Bundle,
    root: Path,
    settings: dict,
    *,
    before_run: Callable[[ConfigWorkflow], dict] | None = None,
    after_run: Callable[[ConfigWorkflow], dict] | None = None,
    **overrides,
) -> dict:
    """One epoch of ``train.json`` offline with the working directory ``root``, writing under ``root``.

    Returns:
        ``{"root", "ckpt": root/models/model.pt, "missing": check_properties()}`` and what ``before_run``
        (after initialisation) and ``after_run`` (before finalisation) return.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        no_network(mp)
        workflow = ConfigWorkflow(
            config_file=bundle.train,
            logging_file=False,
            workflow_type="train",
            bundle_root=str(bundle.root),
            ckpt_dir=str(root / "models"),
            output_dir=str(root / "eval"),
            epochs=1,
            **overrides,
            **settings,
        )
        workflow.initialize()
        result = {"root": root, "ckpt": root / "models" / "model.pt", "missing": workflow.check_properties()}
        result.update(before_run(workflow) if before_run else {})
        workflow.run()
        result.update(after_run(workflow) if after_run else {})
        workflow.finalize()
    return result


def verify_metadata_offline(bundle: Bundle) -> dict:
    """Validate ``metadata.json`` against ``bundles/schema`` (no download), check its changelog; the metadata."""
    verify_metadata(meta_file=bundle.meta, filepath=bundle.schema)  # the schema file exists: nothing is downloaded
    meta = json.loads(Path(bundle.meta).read_text())
    assert meta["version"] in meta["changelog"]
    return meta


def run_evaluation(bundle: Bundle, ckpt: Path, output_dir: Path, settings: dict) -> tuple[str, dict[str, str]]:
    """``train.json`` + ``evaluate.json`` on the checkpoint: (the evaluator's split, the rows of metrics.csv)."""
    workflow = ConfigWorkflow(
        config_file=[bundle.train, bundle.evaluate],
        logging_file=False,
        workflow_type=None,
        bundle_root=str(bundle.root),
        ckpt_dir=str(ckpt.parent),
        output_dir=str(output_dir),
        **settings,
    )
    workflow.initialize()
    split = workflow.parser.get_parsed_content("validate#split")
    workflow.run()
    workflow.finalize()
    with (output_dir / "metrics.csv").open() as f:
        return split, dict(csv.reader(f, delimiter=","))


def run_inference(bundle: Bundle, ckpt: Path, output_dir: Path, **overrides) -> ConfigWorkflow:
    """``inference.json`` on the checkpoint (its properties checked first)."""
    workflow = ConfigWorkflow(
        config_file=bundle.inference,
        workflow_type="infer",
        bundle_root=str(bundle.root),
        ckpt_dir=str(ckpt.parent),
        output_dir=str(output_dir),
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


def _trained_default(value):
    """``"$trained_value(@ckpt_dir, 'k', 64)"`` -> 64 (the value without a training record); others unchanged."""
    match = re.fullmatch(r"\$trained_value\(@ckpt_dir, '(\w+)', (.+)\)", value) if isinstance(value, str) else None
    return ast.literal_eval(match.group(2)) if match else value


def assert_inference_matches_training(bundle: Bundle, keys: Sequence[str]) -> None:
    """inference.json is standalone: its network (and what feeds it) must stay the one train.json trains
    (ids read from the checkpoint's training record must default to train.json's values)."""
    train, infer = json.loads(Path(bundle.train).read_text()), json.loads(Path(bundle.inference).read_text())
    for key in keys:
        assert _trained_default(infer[key]) == train[key], key


def assert_training_record(trained: dict, task: str, config: dict) -> dict:
    """Training wrote ``models/metadata.json`` beside the checkpoint, with ``config`` among its values."""
    meta = json.loads((trained["ckpt"].parent / "metadata.json").read_text())
    assert meta["training"]["task"] == task and meta["training"]["strategy"] == "centralised"
    recorded = meta["training"]["config"]
    assert {k: recorded[k] for k in config} == config
    return meta


def check_net_in_out(bundle: Bundle, config: str, wrong_channels: int | None = None) -> None:
    """``verify_net_in_out`` passes on ``config``, and fails when metadata gives ``wrong_channels`` outputs."""
    kwargs = {"net_id": "network_def", "meta_file": bundle.meta, "config_file": config, "device": "cpu"}
    verify_net_in_out(**kwargs, bundle_root=str(bundle.root))
    if wrong_channels is not None:
        wrong = {"_meta_#network_data_format#outputs#pred#num_channels": wrong_channels}
        with pytest.raises(ValueError, match="output channel number"):
            verify_net_in_out(**kwargs, bundle_root=str(bundle.root), **wrong)


def check_ckpt_export(
    bundle: Bundle, ckpt: Path, ts_file: Path, input_shape: Sequence[int], batch_shape: Sequence[int], atol: float
) -> None:
    """Traced ``ckpt_export`` keeps the metadata and inference.json and gives the eager outputs on another batch.

    Args:
        input_shape: the trace's input (1, C, *S); batch_shape: the comparison batch (B, C, *S).
    """
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt),
        meta_file=bundle.meta,
        config_file=bundle.inference,
        bundle_root=str(bundle.root),
        use_trace=True,  # scripting fails: forward keeps its last tokens on self for the SPAlign loss
        input_shape=list(input_shape),
    )
    traced, meta, extra = load_net_with_metadata(str(ts_file), more_extra_files=("inference.json",))
    assert meta["version"] == json.loads(Path(bundle.meta).read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    image = torch.rand(*batch_shape)
    with torch.no_grad():
        np.testing.assert_allclose(traced(image).numpy(), eager_network(bundle, ckpt)(image).numpy(), atol=atol)
