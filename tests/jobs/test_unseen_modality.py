"""The unseen-modality protocol: which modalities train, which keys a joining site adapts, and that the rest stays."""

import json
import os

import numpy as np
import pytest
import torch

from omnifm_monai.data.phantom.properties import MODALITIES
from omnifm_monai.jobs.settings import JobSettings, parse_job_args
from omnifm_monai.jobs.unseen_modality import (
    adapt_only,
    adaptation_keys,
    training_modalities,
    unseen_markdown,
    unseen_site_settings,
)
from omnifm_monai.strategies import norm_layer_keys

IMAGE_SIZE = 32


def test_training_modalities_leave_the_held_out_one_out():
    assert training_modalities(JobSettings(), "US") == [m for m in MODALITIES if m != "US"]
    assert training_modalities(JobSettings(modalities=["CT", "US", "PET"]), "us") == ["CT", "PET"]
    with pytest.raises(ValueError, match="must be one of"):
        training_modalities(JobSettings(modalities=["CT", "PET"]), "US")
    with pytest.raises(ValueError, match="give --modalities"):
        training_modalities(JobSettings(federation_data="/data/medmnist"), "US")
    with pytest.raises(ValueError, match="classification"):
        training_modalities(JobSettings(task="segmentation"), "US")


def test_modalities_job_option_reaches_the_federation():
    settings, _ = parse_job_args(["--clients", "4", "--modalities", "CT,US", "--samples-per-client", "20"])
    assert settings.modalities == ["CT", "US"]
    from omnifm_monai.jobs.builder import federation_for

    summary = federation_for(settings).summary()  # which site holds which modality
    assert "CT" in summary and "US" in summary and "PET" not in summary
    unseen = unseen_site_settings(settings, "PET", "runs/x")
    assert (unseen.num_clients, unseen.modalities, unseen.samples_per_client) == (1, ["PET"], 20)


@pytest.fixture
def make_site(phantom_site_file, classification_site, tmp_path):
    """Factory: site-1 of the phantom (32 px) with a strategy."""
    return lambda strategy: classification_site(*phantom_site_file(IMAGE_SIZE), tmp_path / strategy, strategy=strategy)


@pytest.mark.parametrize("strategy", ["fedavg", "omnifm"])
def test_adapt_only_changes_the_adaptation_keys_and_nothing_else(strategy, make_site):
    # Prepare
    site = make_site(strategy)
    keys = adaptation_keys(site.strategy, site.network)
    if strategy == "fedavg":  # no private weights: the normalisation layers and the task head
        assert keys == norm_layer_keys(site.network) | {"task_head.weight", "task_head.bias"}
    else:
        assert keys == site.private_keys
    before = {k: v.clone() for k, v in site.network.state_dict().items()}
    # Execute
    trained = adapt_only(site.network, site.trainer, keys, epochs=1, strategy=site.strategy)
    # Assert
    after = site.network.state_dict()
    frozen = [k for k in before if k not in keys]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # bit for bit, buffers too
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    assert all(p.requires_grad for p in site.network.parameters())  # the flags are back


def test_adapt_only_refuses_no_parameters(make_site):
    site = make_site("fedavg")
    with pytest.raises(ValueError, match="name no parameter"):
        adapt_only(site.network, site.trainer, {"no.such.key"}, epochs=1)
    with pytest.raises(ValueError, match=">= 1"):
        adapt_only(site.network, site.trainer, {"task_head.weight"}, epochs=0)


def test_unseen_markdown_means_over_seeds():
    records = [
        {"participation": 1.0, "label": "fedavg", "seed": s, "unseen": {"modality": "US", "adapt_epochs": 3,
         "received": {"restricted_accuracy": r}, "adapted": {"restricted_accuracy": a}}}
        for s, (r, a) in enumerate([(0.2, 0.5), (0.4, 0.7)])
    ]  # fmt: skip
    lines = unseen_markdown(records)
    assert "| 1.0 | fedavg | 30.0 ± 14.1 | 60.0 ± 14.1 | 2 |" in lines
    assert unseen_markdown([{"participation": 1.0, "label": "x"}]) == []


@pytest.mark.skipif(
    not os.environ.get("OMNIFM_SLOW_TESTS"), reason="a tiny federated run (~1 min): set OMNIFM_SLOW_TESTS=1"
)
def test_unseen_modality_benchmark_on_a_tiny_phantom(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [
        sys.executable, os.path.join(repo, "benchmarks", "federated_accuracy.py"), "--clients", "2", "--rounds", "1",
        "--participation", "1.0", "--seeds", "0", "--strategies", "fedavg", "omnifm", "--samples-per-client", "30",
        "--modalities", "CT,US,PET", "--unseen-modality", "PET", "--adapt-epochs", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    report = json.loads((tmp_path / "results.json").read_text())
    for record in report["runs"]:
        unseen = record["unseen"]
        assert unseen["modality"] == "PET"
        assert 0.0 <= unseen["received"]["restricted_accuracy"] <= 1.0
        assert 0.0 <= unseen["adapted"]["restricted_accuracy"] <= 1.0
    assert "Unseen modality PET" in (tmp_path / "results.md").read_text()
    assert np.isfinite(report["runs"][0]["restricted_accuracy"])
