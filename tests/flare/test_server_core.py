"""The server's round logic in-process, on toy parameters (no NVFlare)."""

import json

import numpy as np
import pytest

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.knowledge import SpectralKnowledgeBase, first_contact_rows
from omnifm_monai.strategies import get_strategy

INITIAL = {
    "layer.weight": np.zeros((2, 2), np.float32),
    "bn.num_batches_tracked": np.array(0, np.int64),
    "psp.private_suffix": np.ones((1, 1, 4), np.float32),
}
PRIVATE = {"psp.private_suffix"}
# OmniFM with its spectral path: the server keeps the knowledge base (the path is off in the default ``omnifm``)
OMNIFM_SPECTRAL = get_strategy("omnifm", spectral=True)


def _core(strategy="fedavg", **kwargs):
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    return ServerCore(strategy, INITIAL, PRIVATE, token_dim=4, **kwargs)


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
    core = _core(OMNIFM_SPECTRAL, retrieval_k=2)
    assert core.payload("site-1")[1][MetaKey.PROTOTYPES].shape == (0, 4)  # nothing known yet
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0], [0, 1, 0, 0]]))
    core.submit("site-2", *_omnifm_upload([[0, 0, 1, 0]]))
    record = core.close_round(["site-1", "site-2"])
    assert record["knowledge_base_size"] == 3
    prototypes = core.payload("site-1")[1][MetaKey.PROTOTYPES]
    np.testing.assert_allclose(prototypes, [[0, 0, 1, 0]])  # only site-2's entry is eligible
    assert core.payload("site-2")[1][MetaKey.PROTOTYPES].shape == (2, 4)


def test_a_site_without_an_upload_yet_gets_the_other_sources_newest_entries_in_turn():
    # Prepare: round 0 site-1 (two entries) and site-2; round 1 site-1 again (a newer entry)
    core = _core(OMNIFM_SPECTRAL, retrieval_k=2, prototypes_per_site=3)
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0], [0, 1, 0, 0]]))
    core.submit("site-2", *_omnifm_upload([[0, 0, 1, 0]]))
    core.close_round(["site-1", "site-2"])
    core.submit("site-1", *_omnifm_upload([[0, 0, 0, 1]]))
    core.close_round(["site-1"])
    hits_before = core.knowledge_base.summary()["total_hits"]
    # Execute: site-3 joins late (no query of its own yet)
    prototypes = core.payload("site-3")[1][MetaKey.PROTOTYPES]
    # Assert: site-1's newest, site-2's, then site-1's next; capped at 3; no retrieval, so no hit counted
    np.testing.assert_allclose(prototypes, [[0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]])
    assert core.knowledge_base.summary()["total_hits"] == hits_before
    assert core.payload("site-2")[1][MetaKey.PROTOTYPES].shape[1] == 4  # a site with queries still retrieves


def test_first_contact_rows_are_empty_when_the_base_holds_only_the_sites_own_entries():
    kb = SpectralKnowledgeBase(dim=4)
    kb.add(np.eye(4, dtype=np.float32)[:2], source="site-1", round_num=0)
    assert first_contact_rows(kb, site="site-1", limit=8).shape == (0,)
    assert first_contact_rows(kb, site="site-9", limit=1).tolist() == [0]  # equal age: the first stored


@pytest.mark.parametrize(
    "tokens, reason",
    [(None, "needs spectral tokens"), (np.ones((2, 3)), r"\(N, 4\)"), (np.zeros((1, 4)), "zero"),
     (np.full((1, 4), np.inf), "finite|NaN|Inf"), (np.ones((300, 4)), "at most")],
)  # fmt: skip
def test_omnifm_rejects_bad_tokens(tokens, reason):
    core = _core(OMNIFM_SPECTRAL)
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
    core = _core(OMNIFM_SPECTRAL)
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0]]))
    core.close_round(["site-1"], {"site-1": {"accuracy": 0.25}})
    core.save(tmp_path / "state")
    resumed = _core(OMNIFM_SPECTRAL)
    assert resumed.load(tmp_path / "state")
    assert resumed.round == 1 and resumed.history == core.history
    np.testing.assert_array_equal(resumed.global_params["layer.weight"], core.global_params["layer.weight"])
    np.testing.assert_array_equal(resumed.knowledge_base.vectors, core.knowledge_base.vectors)
    np.testing.assert_array_equal(resumed.site_queries["site-1"], core.site_queries["site-1"])
    assert not _core(OMNIFM_SPECTRAL).load(tmp_path / "missing")
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
    core = _core(OMNIFM_SPECTRAL, prototypes_per_site=0)
    for site in ("site-1", "site-2"):
        params, meta = _upload(1.0)
        core.submit(site, params, {**meta, MetaKey.TOKENS: np.eye(2, 4, dtype=np.float32)})
    core.close_round(["site-1", "site-2"])
    assert core.payload("site-1")[1][MetaKey.PROTOTYPES].shape == (0, 4) and len(core.knowledge_base) > 0


# ---------------------------------------------------------------------- issue 17: poisoning (item 1)
@pytest.mark.parametrize(
    "weight, samples, reason",
    [
        (np.full((2, 2), 1e300), 1, "at most"),  # finite float64, inf in float32
        (np.full((2, 2), 3e38, np.float32), 1, "at most"),
        (np.ones((2, 2), np.float16), 1, "float32 or float64"),
        (np.ones((2, 2), np.int64), 1, "float32 or float64"),
        (np.ones((2, 2), bool), 1, "float32 or float64"),
        (np.ones((2, 2), np.float32), 10**12, "max_num_samples"),  # would make the model the attacker's
        (np.ones((2, 2), np.float32), 10**308, "max_num_samples"),  # would make it NaN
        (np.ones((2, 2), np.float32), 10**400, "max_num_samples"),  # OverflowError on main
        (np.ones((2, 2), np.float32), True, "positive integer"),
    ],
)
def test_poisoned_uploads_are_rejected_and_the_model_stays_finite(weight, samples, reason):
    # Prepare: one honest site uploads 2.0
    core = _core()
    core.submit("site-1", *_upload(2.0))
    # Execute
    with pytest.raises(InvalidUploadError, match=reason):
        core.submit("site-2", {"layer.weight": weight, "bn.num_batches_tracked": 1}, {MetaKey.NUM_SAMPLES: samples})
    record = core.close_round(["site-1", "site-2"])
    # Assert: the honest upload alone, finite
    np.testing.assert_array_equal(core.global_params["layer.weight"], np.full((2, 2), 2.0, np.float32))
    assert list(record["accepted"]) == ["site-1"] and reason.split()[0] in record["rejected"]["site-2"]


def test_a_site_cannot_inflate_its_sample_count_later():
    # Prepare: site-1 reports 10 samples in round 0
    core = _core()
    core.submit("site-1", *_upload(1.0, samples=10))
    core.close_round(["site-1"])
    # Execute / Assert: 10**6 in round 1 is refused (at most a factor 2 of change), 20 is accepted
    with pytest.raises(InvalidUploadError, match="inconsistent"):
        core.submit("site-1", *_upload(1.0, samples=10**6))
    core.submit("site-1", *_upload(1.0, samples=20))


def test_a_non_finite_aggregate_drops_the_round(tmp_path, caplog):
    # Prepare: a server aggregator (as FedAdam could) that returns NaN for finite uploads
    core = _core()
    core.submit("site-1", *_upload(1.0))
    core.close_round(["site-1"])  # global weight 1.0
    core.submit("site-1", *_upload(3.0))
    core._aggregator.aggregate = lambda g: {**g, "layer.weight": np.full((2, 2), np.nan, np.float32)}
    # Execute
    record = core.close_round(["site-1"])
    core.save(tmp_path / "state")
    # Assert: the previous global weights are kept, sent and saved; the drop is recorded and logged
    assert "not finite" in record["dropped"] and "layer.weight" in record["dropped"]
    assert "round dropped" in caplog.text
    np.testing.assert_array_equal(core.payload("site-1")[0]["layer.weight"], 1.0)
    resumed = _core()
    assert resumed.load(tmp_path / "state") and resumed.round == 2
    np.testing.assert_array_equal(resumed.global_params["layer.weight"], 1.0)


# ---------------------------------------------------------------------- issue 17: one site's field (item 2)
def test_numpy_metrics_do_not_break_save(tmp_path):
    # Prepare: metrics as numpy scalars, a NaN and a string, from the upload and from the controller
    core = _core()
    params, meta = _upload(2.0)
    core.submit("site-1", params, meta, metrics={"accuracy": np.float32(0.5), "loss": np.nan, "x": "y"})
    record = core.close_round(["site-1", "site-2"], {"site-2": {"accuracy": np.float64(0.25)}})
    # Execute
    core.save(tmp_path / "state")
    resumed = _core()
    resumed.load(tmp_path / "state")
    # Assert: Python floats kept, the unusable ones dropped, the upload still accepted
    assert record["metrics"] == {"site-1": {"accuracy": 0.5}, "site-2": {"accuracy": 0.25}}
    assert resumed.history[0]["metrics"] == record["metrics"] and list(record["accepted"]) == ["site-1"]


def test_a_bad_dp_report_rejects_the_whole_upload():
    # Prepare: site-2's weights are fine, its dp_epsilon is not numeric
    core = _core()
    core.submit("site-1", *_upload(2.0))
    params, meta = _upload(8.0)
    # Execute
    with pytest.raises(InvalidUploadError, match="dp_epsilon"):
        core.submit("site-2", params, {**meta, MetaKey.DP_EPSILON: ["abc", 1.0, 1e-5]})
    record = core.close_round(["site-1", "site-2"])
    # Assert: nothing of site-2 was staged (main averaged its weights in: (2 + 8) / 2 = 5)
    np.testing.assert_array_equal(core.global_params["layer.weight"], 2.0)
    assert list(record["accepted"]) == ["site-1"] and "dp_epsilon" in record["rejected"]["site-2"]


def test_a_good_dp_report_is_recorded_as_floats():
    core = _core()
    params, meta = _upload(2.0)
    core.submit("site-1", params, {**meta, MetaKey.DP_EPSILON: np.array([0.5, 1.0, 1e-5], np.float32)})
    assert core.close_round(["site-1"])["accepted"]["site-1"]["dp_epsilon"] == pytest.approx([0.5, 1.0, 1e-5])


# ---------------------------------------------------------------------- issue 17: options (item 5)
@pytest.mark.parametrize(
    "option, value",
    [("prototypes_per_site", -5), ("retrieval_k", -1), ("token_dim", 0), ("max_tokens_per_upload", 0),
     ("knowledge_base_size", 0), ("min_per_source", -1), ("max_age", -2), ("max_abs_value", float("inf")),
     ("max_abs_value", 0), ("max_num_samples", 0), ("max_sample_change", 0.5), ("duplicate_threshold", 1.5),
     ("balance_sources", "yes"), ("prototypes_per_site", 2.5)],
)  # fmt: skip
def test_server_options_are_validated_at_start(option, value):
    options = {"token_dim": 4, option: value}
    with pytest.raises(ValueError, match=option):
        ServerCore(OMNIFM_SPECTRAL, INITIAL, PRIVATE, **options)


def test_an_empty_token_upload_keeps_the_sites_queries():
    # Prepare: site-1's queries from round 0
    core = _core(OMNIFM_SPECTRAL)
    core.submit("site-1", *_omnifm_upload([[1, 0, 0, 0]]))
    core.close_round(["site-1"])
    # Execute: a (0, d) upload in round 1
    with pytest.raises(InvalidUploadError, match="at least one row"):
        core.submit("site-1", *_omnifm_upload(np.zeros((0, 4))))
    core.close_round(["site-1"])
    # Assert
    np.testing.assert_array_equal(core.site_queries["site-1"], [[1, 0, 0, 0]])


# ---------------------------------------------------------------------- issue 17: durability (item 4)
def _saved_core(tmp_path, strategy=OMNIFM_SPECTRAL):
    core = _core(strategy)
    params, meta = _omnifm_upload([[1, 0, 0, 0]])
    core.submit("site-1", params, meta)
    core.close_round(["site-1"])
    core.save(tmp_path / "state")
    return core


def test_a_crash_between_the_two_renames_resumes_from_the_old_copy(tmp_path):
    # Prepare: a complete state of round 1, then a save interrupted after its first rename
    _saved_core(tmp_path)
    (tmp_path / "state").rename(tmp_path / "state.old")
    # Execute
    resumed = _core(OMNIFM_SPECTRAL)
    found = resumed.load(tmp_path / "state")
    resumed.save(tmp_path / "state")  # the next save completes and removes the old copy
    # Assert
    assert found and resumed.round == 1 and len(resumed.knowledge_base) == 1
    assert (tmp_path / "state" / "server_state.json").is_file() and not (tmp_path / "state.old").exists()


def test_save_over_a_leftover_old_copy(tmp_path):
    core = _saved_core(tmp_path)
    (tmp_path / "state.old").mkdir()
    (tmp_path / "state.old" / "junk").write_text("x")
    core.save(tmp_path / "state")  # os.replace onto a non-empty folder failed on main
    assert _core(OMNIFM_SPECTRAL).load(tmp_path / "state")


@pytest.mark.parametrize("name", ["global_params.npz", "site_queries.npz", "knowledge_base.npz", "server_state.json"])
def test_truncated_state_files_are_named(tmp_path, name):
    # Prepare: the file cut to half its length
    _saved_core(tmp_path)
    path = tmp_path / "state" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # Execute / Assert: a ValueError naming the file (main: BadZipFile / JSONDecodeError without it)
    with pytest.raises(ValueError, match=name):
        _core(OMNIFM_SPECTRAL).load(tmp_path / "state")


def test_a_flipped_byte_in_the_model_is_caught_by_the_checksum(tmp_path):
    _saved_core(tmp_path)
    path = tmp_path / "state" / "global_params.npz"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="global_params.npz.*checksum"):
        _core(OMNIFM_SPECTRAL).load(tmp_path / "state")


def _rewrite_state(tmp_path, **changes):
    """Edit server_state.json as an older version (no checksums) would have written it."""
    path = tmp_path / "state" / "server_state.json"
    saved = json.loads(path.read_text())
    saved.pop("checksums")
    path.write_text(json.dumps({**saved, **changes}))


def test_a_nan_model_or_a_negative_round_is_refused_on_load(tmp_path):
    # Prepare: NaN weights in a state without checksums
    _saved_core(tmp_path)
    np.savez(tmp_path / "state" / "global_params.npz", **{"layer.weight": np.full((2, 2), np.nan, np.float32),
             "bn.num_batches_tracked": np.array(0)})  # fmt: skip
    _rewrite_state(tmp_path)
    with pytest.raises(ValueError, match="global_params.npz holds NaN"):
        _core(OMNIFM_SPECTRAL).load(tmp_path / "state")
    # Prepare: a negative round
    _saved_core(tmp_path)
    _rewrite_state(tmp_path, round=-1)
    with pytest.raises(ValueError, match="server_state.json has round -1"):
        _core(OMNIFM_SPECTRAL).load(tmp_path / "state")


def test_save_refuses_non_finite_weights(tmp_path):
    core = _saved_core(tmp_path)
    core.global_params["layer.weight"] = np.full((2, 2), np.inf, np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        core.save(tmp_path / "state")
    assert _core(OMNIFM_SPECTRAL).load(tmp_path / "state")  # the previous state is intact
