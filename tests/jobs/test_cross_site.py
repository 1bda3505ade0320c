"""Cross-site evaluation: the matrix from models and test splits, and the rebuild of a run's final models."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from omnifm_monai.jobs.builder import build_network, federation_for
from omnifm_monai.jobs.cross_site import (
    cross_site_markdown,
    cross_site_matrix,
    cross_site_section,
    final_site_trainers,
    load_settings,
    plot_cross_site,
)
from omnifm_monai.jobs.settings import JobSettings


class ConstantClassifier(nn.Module):
    """Predicts ``label`` for every input."""

    def __init__(self, label: int, num_classes: int = 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.eye(num_classes)[label])

    def forward(self, x):
        return self.logits.expand(len(x), -1)  # (N, num_classes)


def _accuracy_on(labels):
    def evaluate(network):
        predicted = network(torch.zeros(len(labels), 1)).argmax(1).numpy()
        return {"accuracy": float(np.mean(predicted == labels)), "n": float(len(labels))}

    return evaluate


def test_matrix_rows_are_models_columns_test_splits_diagonal_own_scores():
    # Prepare: site-1 always says 0, site-2 always 1; site-1's test labels are 3 of 4 zeros, site-2's all ones
    models = {"site-1": ConstantClassifier(0), "site-2": ConstantClassifier(1)}
    evaluators = {"site-1": _accuracy_on(np.array([0, 0, 0, 1])), "site-2": _accuracy_on(np.array([1, 1]))}
    # Execute
    result = cross_site_matrix(models, evaluators, "accuracy")
    # Assert
    assert result["models"] == result["test_sites"] == ["site-1", "site-2"]
    assert np.asarray(result["matrix"]).shape == (2, 2)
    assert result["matrix"] == [[0.75, 0.0], [0.25, 1.0]]
    for site in models:  # the diagonal: each site's own final score
        assert (
            result["matrix"][result["models"].index(site)][result["test_sites"].index(site)]
            == (evaluators[site](models[site])["accuracy"])
        )
    assert result["metrics"]["site-2"]["site-1"] == {"accuracy": 0.25, "n": 4.0}
    table = cross_site_markdown(result)
    assert "| site-1 | 75.0 | 0.0 | 0.0 |" in table  # the last column: mean on the other sites
    assert "| site-2 | 25.0 | 100.0 | 25.0 |" in table


def test_heatmap_and_report_section_are_written(tmp_path):
    result = cross_site_matrix({"a": ConstantClassifier(0)}, {"a": _accuracy_on(np.array([0]))}, "accuracy")
    result["plot"] = str(tmp_path / "fedavg" / "cross_site.png")
    (tmp_path / "fedavg").mkdir()
    plot_cross_site(result, result["plot"])
    result["markdown"] = cross_site_markdown(result)
    section = cross_site_section({"fedavg": result}, str(tmp_path))
    assert (tmp_path / "fedavg" / "cross_site.png").stat().st_size > 1000
    assert "![cross-site fedavg](fedavg/cross_site.png)" in section


@pytest.mark.parametrize("strategy", ["fedavg", "omnifm"])
def test_rebuilt_final_models_score_as_the_sites_do(tmp_path, strategy):
    """A 2-site run state (server state at round 0, no private files yet): every rebuilt site's diagonal entry
    is its own SiteTrainer.evaluate(), and the rebuild writes nothing into the sites' private folders."""
    from omnifm_monai.flare.server_core import ServerCore

    # Prepare
    settings = JobSettings(strategy=strategy, num_clients=2, samples_per_client=30, image_size=32)
    settings.state_root = str(tmp_path / "state")
    settings.bundle_overrides = {"batch_size": 8}
    settings.save()
    federation = federation_for(settings)
    network, fl_strategy = build_network(settings, federation.num_classes)
    params = {k: v.numpy() for k, v in network.state_dict().items()}
    ServerCore(fl_strategy, params, fl_strategy.private_keys(network)).save(settings.server_state_dir())
    # Execute
    trainers = final_site_trainers(load_settings(settings.state_root), str(tmp_path / "scratch"))
    models = {s: t.evaluation_network() for s, t in trainers.items()}
    result = cross_site_matrix(models, {s: t.score_on_test for s, t in trainers.items()}, "restricted_accuracy")
    # Assert
    assert np.asarray(result["matrix"]).shape == (2, 2)
    for i, site in enumerate(result["models"]):
        assert result["matrix"][i][i] == trainers[site].evaluate()["restricted_accuracy"]
    site_files = sorted(p.name for p in (tmp_path / "state" / "site-1").iterdir())
    assert site_files == ["data_classification.npz"]  # checkpoints and events went to the scratch folder
    assert json.loads((tmp_path / "state" / "settings.json").read_text())["strategy"] == strategy
