"""FedAdam, FedYogi and FedAvgM: the server's step on the pseudo-gradient, by hand."""

import numpy as np
import pytest

from omnifm_monai.strategies import STRATEGIES, ServerOptimizer, get_strategy
from omnifm_monai.strategies.aggregate import optimized_keys


def _round(aggregator, global_params, uploads):
    aggregator.reset()
    for site, (params, weight) in uploads.items():
        aggregator.accept(site, params, weight=weight, round_num=0)
    return aggregator.aggregate(global_params)


def _two_sites(w1, w2, counter=(3, 5)):
    return {
        "site-1": ({"w": np.array(w1, np.float32), "bn.num_batches_tracked": np.array(counter[0])}, 1.0),
        "site-2": ({"w": np.array(w2, np.float32), "bn.num_batches_tracked": np.array(counter[1])}, 3.0),
    }


GLOBAL = {"w": np.array([1.0, -2.0], np.float32), "bn.num_batches_tracked": np.array(0)}


def test_fedadam_server_step_by_hand():
    # Prepare: weighted mean (1*[2, -2] + 3*[2, -1]) / 4 = [2, -1.25]; delta = [1, 0.75]
    aggregator = get_strategy("fedadam").aggregator()  # lr 0.01, b1 0.9, b2 0.99, tau 1e-3
    # Execute
    new = _round(aggregator, GLOBAL, _two_sites([2.0, -2.0], [2.0, -1.0]))
    # Assert: m = 0.1 d; v = 0.99 tau^2 + 0.01 d^2; x + 0.01 m / (sqrt(v) + tau)
    d = np.array([1.0, 0.75])
    m, v = 0.1 * d, 0.99 * 1e-6 + 0.01 * d**2
    np.testing.assert_allclose(aggregator.m["w"], m)
    np.testing.assert_allclose(aggregator.v["w"], v)
    expected = np.array([1.0, -2.0]) + 0.01 * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(new["w"], expected, rtol=1e-6)
    assert abs(new["w"][0] - 1.0099) < 1e-4  # 0.01 * 0.1 / (0.1 + 0.001) ~ 0.0099: an lr-sized step
    # the integer counter is the weighted mean (3*1 + 5*3) / 4 = 4.5 -> 4, no optimizer step
    assert new["bn.num_batches_tracked"].dtype == GLOBAL["bn.num_batches_tracked"].dtype
    assert int(new["bn.num_batches_tracked"]) == 4 and "bn.num_batches_tracked" not in aggregator.m


def test_fedyogi_v_update_by_hand():
    # Prepare: v starts at tau^2 = 1e-6 < d^2, so Yogi's sign is -1 and v grows by (1 - b2) d^2
    aggregator = get_strategy("fedyogi", tau=0.1).aggregator()
    d = np.array([1.0, 0.75])
    # Execute: round 1, then a round with a small delta
    first = _round(aggregator, GLOBAL, _two_sites([2.0, -2.0], [2.0, -1.0]))
    v1 = 0.01 + 0.01 * d**2  # tau^2 + (1 - b2) d^2
    np.testing.assert_allclose(aggregator.v["w"], v1)
    small = first["w"].astype(np.float64) + 0.01  # every upload moved by 0.01: d2 = 0.01
    _round(aggregator, {**GLOBAL, "w": first["w"]}, _two_sites(small, small))
    # Assert: v1 > d2^2, sign +1: Yogi's v shrinks additively by (1 - b2) d2^2 (Adam's would shrink by 1 %)
    d2 = small - first["w"].astype(np.float64)
    np.testing.assert_allclose(aggregator.v["w"], v1 - 0.01 * d2**2, rtol=1e-6)
    adam_v = 0.99 * v1 + 0.01 * d2**2
    assert np.all(aggregator.v["w"] > adam_v)


def test_fedavgm_momentum_by_hand():
    # Prepare: lr 1, momentum 0.9
    aggregator = get_strategy("fedavgm").aggregator()
    # Execute: round 1: delta [1, 0.75] -> m = d, x = [2, -1.25] (the mean, as FedAvg)
    first = _round(aggregator, GLOBAL, _two_sites([2.0, -2.0], [2.0, -1.0]))
    np.testing.assert_allclose(first["w"], [2.0, -1.25])
    # round 2: every site sends back the global: delta 0, m = 0.9 m, x moves on by 0.9 * [1, 0.75]
    second = _round(aggregator, {**GLOBAL, "w": first["w"]}, _two_sites(first["w"], first["w"]))
    # Assert
    np.testing.assert_allclose(second["w"], [2.9, -0.575], rtol=1e-6)
    np.testing.assert_allclose(aggregator.m["w"], [0.9, 0.675])


def test_only_float_non_statistics_keys_are_optimized():
    params = {
        "conv.weight": np.zeros(2, np.float32),
        "bn.running_mean": np.zeros(2, np.float32),
        "bn.running_var": np.ones(2, np.float32),
        "bn.num_batches_tracked": np.array(1),
    }
    assert optimized_keys(params) == ["conv.weight"]


def test_moments_survive_a_state_round_trip(tmp_path):
    # Prepare: one round of FedAdam
    first = get_strategy("fedadam").aggregator()
    new = _round(first, GLOBAL, _two_sites([2.0, -2.0], [2.0, -1.0]))
    first.save_state(tmp_path / "state.npz")
    # Execute: a fresh aggregator (a restarted server) loads the moments and runs the same next round
    second = get_strategy("fedadam").aggregator()
    assert second.load_state(tmp_path / "state.npz", like=new)
    uploads = _two_sites([3.0, 0.0], [1.0, 1.0])
    a, b = _round(first, {**GLOBAL, "w": new["w"]}, uploads), _round(second, {**GLOBAL, "w": new["w"]}, uploads)
    # Assert: bit-identical to the server that never stopped
    np.testing.assert_array_equal(a["w"], b["w"])
    assert not second.load_state(tmp_path / "missing.npz", like=new)
    with pytest.raises(ValueError, match="does not match the global model"):
        second.load_state_dict({"m/other": np.zeros(2)}, like=new)


def test_registry_and_ill_options():
    assert {"fedadam", "fedyogi", "fedavgm"} <= set(STRATEGIES)
    assert get_strategy("fedavgm").server_lr == 1.0 and get_strategy("fedavgm").server_momentum == 0.9
    assert (get_strategy("fedadam").beta1, get_strategy("fedadam").beta2, get_strategy("fedadam").tau) == (
        0.9,
        0.99,
        1e-3,
    )
    with pytest.raises(ValueError, match="server learning rate"):
        get_strategy("fedadam", server_lr=0)
    with pytest.raises(ValueError, match="beta2"):
        get_strategy("fedyogi", beta2=1.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ServerOptimizer(optimizer="sgd", lr=1.0)
