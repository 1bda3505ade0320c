"""SCAFFOLD: the site's correction and option-II control-variate update, the server's c, by hand."""

import types

import numpy as np
import pytest
import torch
from torch import nn

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.strategies import STRATEGIES, get_strategy
from omnifm_monai.strategies.scaffold import ScaffoldAggregator, ScaffoldCorrection


def _toy():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    return model


def _local_round(model, correction, gradient, steps, lr=0.1):
    """``steps`` SGD steps of the loss ``<g, w>`` (constant gradient g), each followed by the correction."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    engine = types.SimpleNamespace(optimizer=optimizer)
    correction.start_round()
    for _ in range(steps):
        optimizer.zero_grad()
        (model.weight * torch.tensor([gradient])).sum().backward()
        optimizer.step()
        correction(engine)  # ITERATION_COMPLETED
    correction.end_round(optimizer)


def test_site_correction_and_option_two_update_by_hand():
    # Prepare: x = [1, 1], server c = [0.5, 0], c_i = 0, gradient g = [1, 2], lr 0.1, K = 2 steps
    model = _toy()
    correction = ScaffoldCorrection(model)
    correction.set_global({"weight": np.array([[0.5, 0.0]], np.float32)})
    # Execute
    _local_round(model, correction, [1.0, 2.0], steps=2)
    # Assert: y = x - K lr (g + c - c_i) = [1, 1] - 0.2 * [1.5, 2] = [0.7, 0.6]
    np.testing.assert_allclose(model.weight.detach().numpy(), [[0.7, 0.6]], rtol=1e-6)
    # c_i+ = c_i - c + (x - y) / (K lr) = -[0.5, 0] + [0.3, 0.4] / 0.2 = [1, 2]: the local gradient
    np.testing.assert_allclose(correction.delta()["weight"], [[1.0, 2.0]], rtol=1e-5)
    assert correction.delta()["weight"].dtype == np.float32
    # the private c_i round-trips through the site's state file format
    state = correction.state()
    np.testing.assert_allclose(state["c_local.weight"].numpy(), [[1.0, 2.0]], rtol=1e-5)
    fresh = ScaffoldCorrection(_toy())
    fresh.load_state(state)
    np.testing.assert_allclose(fresh.state()["c_local.weight"].numpy(), [[1.0, 2.0]], rtol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        fresh.load_state({"c_local.other": torch.zeros(2)})


def test_server_control_variate_update_by_hand():
    # Prepare: deltas [1, 2] and [3, 0] from two of N sites
    global_params = {"weight": np.zeros((1, 2), np.float32), "bn.num_batches_tracked": np.array(0)}
    for num_sites, expected in ((0, [[2.0, 1.0]]), (4, [[1.0, 0.5]])):  # N = 2 seen, N = 4 given
        aggregator = ScaffoldAggregator(num_sites=num_sites)
        assert aggregator.outgoing_meta("site-1") == {}  # c = 0 before the first aggregation
        for site, delta in (("site-1", [[1.0, 2.0]]), ("site-2", [[3.0, 0.0]])):
            params = {"weight": np.ones((1, 2), np.float32), "bn.num_batches_tracked": np.array(2)}
            aggregator.accept(
                site, params, weight=1.0, round_num=0, meta={MetaKey.CONTROL_DELTA: {"weight": np.array(delta)}}
            )
        # Execute
        new = aggregator.aggregate(global_params)
        # Assert: c = (1/N) sum delta_i; the weights are the plain weighted mean
        sent = aggregator.outgoing_meta("site-1")[MetaKey.CONTROL_VARIATE]
        np.testing.assert_allclose(sent["weight"], expected)
        assert sent["weight"].dtype == np.float32 and set(sent) == {"weight"}
        np.testing.assert_allclose(new["weight"], 1.0)


def test_server_rejects_bad_control_deltas_and_keeps_c_across_a_restart(tmp_path):
    # Prepare
    initial = {"layer.weight": np.zeros((2, 2), np.float32), "bn.num_batches_tracked": np.array(0)}
    core = ServerCore(get_strategy("scaffold"), initial, set(), token_dim=4)
    weights = {"layer.weight": np.ones((2, 2), np.float32), "bn.num_batches_tracked": np.array(1)}

    def meta(delta):
        return {MetaKey.NUM_SAMPLES: 4, **({} if delta is None else {MetaKey.CONTROL_DELTA: delta})}

    bad = {
        "site-1": None,  # no delta at all
        "site-2": {"layer.weight": np.ones((2, 3), np.float32)},  # wrong shape
        "site-3": {"layer.weight": np.ones((2, 2)), "other": np.ones(1)},  # unknown key
        "site-4": {"layer.weight": np.full((2, 2), np.nan, np.float32)},  # NaN
        "site-5": {"layer.weight": np.ones((2, 2)), "bn.num_batches_tracked": np.ones(())},  # not a parameter
    }
    # Execute / Assert: each is rejected, named in the round's record
    for site, delta in bad.items():
        with pytest.raises(InvalidUploadError, match=MetaKey.CONTROL_DELTA):
            core.submit(site, weights, meta(delta))
    core.submit("site-6", weights, meta({"layer.weight": np.full((2, 2), 2.0, np.float32)}))
    record = core.close_round(participants=[*bad, "site-6"])
    assert sorted(record["rejected"]) == sorted(bad) and list(record["accepted"]) == ["site-6"]
    np.testing.assert_allclose(core.payload("site-6")[1][MetaKey.CONTROL_VARIATE]["layer.weight"], 2.0)
    # a restarted server sends the same c
    core.save(tmp_path / "server")
    restarted = ServerCore(get_strategy("scaffold"), initial, set(), token_dim=4)
    assert restarted.load(tmp_path / "server")
    np.testing.assert_allclose(restarted.payload("site-1")[1][MetaKey.CONTROL_VARIATE]["layer.weight"], 2.0)
    assert restarted._aggregator.seen == {"site-6"}


def test_registry_entry_and_ill_options():
    assert "scaffold" in STRATEGIES and isinstance(STRATEGIES["scaffold"].aggregator(), ScaffoldAggregator)
    assert STRATEGIES["scaffold"].private_keys(nn.Linear(2, 1)) == set()  # every parameter shared
    with pytest.raises(ValueError, match="num_sites"):
        get_strategy("scaffold", num_sites=-1)
