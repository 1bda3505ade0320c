"""The server's round logic in-process, on toy parameters (no NVFlare)."""

import numpy as np
import pytest

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.strategies import get_strategy

INITIAL = {
    "layer.weight": np.zeros((2, 2), np.float32),
    "bn.num_batches_tracked": np.array(0, np.int64),
    "psp.private_suffix": np.ones((1, 1, 4), np.float32),
}
PRIVATE = {"psp.private_suffix"}


def _core(strategy="fedavg", **kwargs):
    return ServerCore(get_strategy(strategy), INITIAL, PRIVATE, token_dim=4, **kwargs)


def _upload(value, count=10, samples=1):
    return {"layer.weight": np.full((2, 2), value, np.float32), "bn.num_batches_tracked": np.array(count)}, {
        MetaKey.NUM_SAMPLES: samples
    }


def test_payload_never_contains_private_keys():
    params, meta = _core().payload("site-1")
    assert set(params) == {"layer.weight", "bn.num_batches_tracked"}
    assert meta[MetaKey.ROUND] == 0 and MetaKey.PROTOTYPES not in meta


def test_weighted_average_by_sample_count_keeps_dtypes():
    # Prepare: 1.0 with 1 sample and 4.0 with 3 samples -> (1 + 12) / 4 = 3.25
    core = _core()
    # Execute
    core.submit("site-1", *_upload(1.0, count=10, samples=1))
    core.submit("site-2", *_upload(4.0, count=30, samples=3))
    record = core.close_round(["site-1", "site-2"], {"site-1": {"accuracy": 0.5}})
    # Assert
    np.testing.assert_allclose(core.global_params["layer.weight"], 3.25)
    assert core.global_params["bn.num_batches_tracked"].dtype == np.int64
    assert int(core.global_params["bn.num_batches_tracked"]) == 25
    assert record["round"] == 0 and core.round == 1
    assert sorted(record["accepted"]) == ["site-1", "site-2"]
    assert record["accepted"]["site-1"]["model_bytes"] == 16 + 8


def test_aggregate_does_not_depend_on_arrival_order():
    # Prepare: three float32 uploads whose float32 sum depends on the order it is taken in
    values, samples = [1e8, 1.0, -1e8], [1, 3, 1]

    def aggregate(order):
        core = _core()
        for i in order:
            core.submit(f"site-{i}", *_upload(values[i], samples=samples[i]))
        core.close_round()
        return core.global_params["layer.weight"]

    # Execute
    results = [aggregate(order) for order in ([0, 1, 2], [0, 2, 1], [1, 2, 0])]
    # Assert: bit-identical whichever site answers first
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


GOOD = {"layer.weight": np.ones((2, 2)), "bn.num_batches_tracked": 1}


@pytest.mark.parametrize(
    "params, samples, reason",
    [
        ({**GOOD, "psp.private_suffix": np.ones((1, 1, 4))}, 1, "private"),
        ({**GOOD, "layer.weight": np.full((2, 2), np.nan)}, 1, "NaN"),
        ({**GOOD, "layer.weight": np.ones((3, 2))}, 1, "shape"),
        ({"layer.weight": np.ones((2, 2))}, 1, "missing"),
        ({**GOOD, "extra": 1}, 1, "unknown"),
        (GOOD, 0, "positive"),
        ({**GOOD, "layer.weight": np.array([["a", "b"], ["c", "d"]])}, 1, "dtype"),
    ],
)
def test_bad_uploads_are_rejected_and_change_nothing(params, samples, reason):
    core = _core()
    core.submit("site-1", *_upload(2.0))
    with pytest.raises(InvalidUploadError, match=reason):
        core.submit("site-2", params, {MetaKey.NUM_SAMPLES: samples})
    record = core.close_round(["site-1", "site-2"])
    np.testing.assert_allclose(core.global_params["layer.weight"], 2.0)  # only site-1 counted
    assert list(record["accepted"]) == ["site-1"]
    assert list(record["rejected"]) == ["site-2"]


def test_duplicate_submission_rejected():
    core = _core()
    core.submit("site-1", *_upload(1.0))
    with pytest.raises(InvalidUploadError, match="already"):
        core.submit("site-1", *_upload(5.0))


def test_round_without_accepted_uploads_keeps_the_model():
    core = _core()
    record = core.close_round(["site-1"])
    np.testing.assert_array_equal(core.global_params["layer.weight"], 0.0)
    assert record["no_result"] == ["site-1"]  # asked, but nothing came back


def _omnifm_upload(site_vectors):
    params, meta = _upload(1.0)
    meta[MetaKey.TOKENS] = np.asarray(site_vectors, np.float32)
    return params, meta


def test_omnifm_retrieves_from_other_sites_only():
    core = _core("omnifm", retrieval_k=2)
    assert core.payload("site-1")[1][MetaKey.PROTOTYPES].shape == (0, 4)  # nothing known yet
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0], [0, 1, 0, 0]]))
    core.submit("site-2", *_omnifm_upload([[0, 0, 1, 0]]))
    record = core.close_round(["site-1", "site-2"])
    assert record["knowledge_base_size"] == 3
    prototypes = core.payload("site-1")[1][MetaKey.PROTOTYPES]
    np.testing.assert_allclose(prototypes, [[0, 0, 1, 0]])  # only site-2's entry is eligible
    assert core.payload("site-2")[1][MetaKey.PROTOTYPES].shape == (2, 4)


@pytest.mark.parametrize(
    "tokens, reason",
    [(None, "needs spectral tokens"), (np.ones((2, 3)), r"\(N, 4\)"), (np.zeros((1, 4)), "zero"),
     (np.full((1, 4), np.inf), "finite|NaN|Inf"), (np.ones((300, 4)), "at most")],
)  # fmt: skip
def test_omnifm_rejects_bad_tokens(tokens, reason):
    core = _core("omnifm")
    params, meta = _upload(1.0)
    if tokens is not None:
        meta[MetaKey.TOKENS] = tokens
    with pytest.raises(InvalidUploadError, match=reason):
        core.submit("site-1", params, meta)
    core.close_round(["site-1"])
    assert len(core.knowledge_base) == 0


def test_local_strategy_shares_nothing():
    core = ServerCore(get_strategy("local"), INITIAL, set(INITIAL), token_dim=4)
    assert core.payload("site-1")[0] == {}
    core.submit("site-1", {}, {MetaKey.NUM_SAMPLES: 5})
    assert list(core.close_round(["site-1"])["accepted"]) == ["site-1"]


def test_save_and_resume(tmp_path):
    core = _core("omnifm")
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0]]))
    core.close_round(["site-1"], {"site-1": {"accuracy": 0.25}})
    core.save(tmp_path / "state")
    resumed = _core("omnifm")
    assert resumed.load(tmp_path / "state")
    assert resumed.round == 1 and resumed.history == core.history
    np.testing.assert_array_equal(resumed.global_params["layer.weight"], core.global_params["layer.weight"])
    np.testing.assert_array_equal(resumed.knowledge_base.vectors, core.knowledge_base.vectors)
    np.testing.assert_array_equal(resumed.site_queries["site-1"], core.site_queries["site-1"])
    assert not _core("omnifm").load(tmp_path / "missing")
    with pytest.raises(ValueError, match="omnifm"):
        _core("fedavg").load(tmp_path / "state")


def test_a_site_reporting_failed_training_is_skipped_for_the_round():
    core = _core()
    core.submit("site-1", *_upload(2.0))
    with pytest.raises(InvalidUploadError, match="training failed"):
        core.submit("site-2", {}, {MetaKey.TRAINING_FAILED: True})
    record = core.close_round(["site-1", "site-2"])
    np.testing.assert_allclose(core.global_params["layer.weight"], 2.0)
    assert sorted(record["accepted"]) == ["site-1"] and "training failed" in record["rejected"]["site-2"]


def test_no_prototypes_when_gskr_is_ablated():
    core = _core("omnifm", prototypes_per_site=0)
    for site in ("site-1", "site-2"):
        params, meta = _upload(1.0)
        core.submit(site, params, {**meta, MetaKey.TOKENS: np.eye(2, 4, dtype=np.float32)})
    core.close_round(["site-1", "site-2"])
    assert core.payload("site-1")[1][MetaKey.PROTOTYPES].shape == (0, 4) and len(core.knowledge_base) > 0
