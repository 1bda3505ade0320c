"""Tests for omnifm_monai.knowledge: top-k cosine retrieval, hit counting, pruning, ageing, persistence."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from omnifm_monai.knowledge import SpectralKnowledgeBase, topk_cosine


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(queries, keys, k, exclude=None):
    """Reference: the full cosine matrix, excluded columns removed, full argsort."""
    sims = _unit(queries) @ _unit(keys).T
    if exclude is not None:
        sims[:, exclude] = -np.inf
    k = min(k, keys.shape[0] - (0 if exclude is None else int(exclude.sum())))
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _filled_base(rng, sizes=None, dim=8, **kwargs) -> SpectralKnowledgeBase:
    kb = SpectralKnowledgeBase(dim, **kwargs)
    for r, (name, n) in enumerate((sizes or {"ct": 6, "mr": 5}).items()):
        kb.add(rng.standard_normal((n, dim)), name, round_num=r)
    return kb


# ---------------------------------------------------------------------- topk_cosine
def test_topk_cosine_hand_computed():
    # Prepare
    keys = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    queries = np.array([[2.0, 0.0], [0.0, -1.0]])

    # Execute
    scores, idx = topk_cosine(queries, keys, k=2, chunk_size=1)

    # Assert: query 0 is key 0 (cos 1) then key 2 (cos 1/sqrt 2); query 1 is key 0 (0) then key 2 (-0.707)
    np.testing.assert_array_equal(idx, [[0, 2], [0, 2]])
    np.testing.assert_allclose(scores, [[1.0, 0.5**0.5], [0.0, -(0.5**0.5)]], atol=1e-6)
    assert scores.dtype == np.float32 and idx.dtype == np.int64


@pytest.mark.parametrize("k", [1, 3, 8, 40, 500])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
def test_topk_cosine_matches_brute_force(k, chunk_size):
    # Prepare
    rng = np.random.default_rng(k * 1000 + chunk_size)
    keys = rng.standard_normal((300, 16)) * rng.uniform(0.1, 5.0, (300, 1))  # not unit norm
    queries = rng.standard_normal((9, 16))

    # Execute
    scores, idx = topk_cosine(queries, keys, k, chunk_size)

    # Assert
    ref_scores, ref_idx = _brute_force(queries, keys, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [5, 64, 10_000])
def test_topk_cosine_exclude_matches_brute_force(chunk_size):
    # Prepare
    rng = np.random.default_rng(chunk_size)
    keys = _unit(rng.standard_normal((5000, 32))).astype(np.float32)
    queries = rng.standard_normal((17, 32))
    exclude = rng.random(5000) < 0.3

    # Execute
    scores, idx = topk_cosine(queries, keys, 8, chunk_size, exclude=exclude, keys_normalized=True)

    # Assert
    ref_scores, ref_idx = _brute_force(queries, keys, 8, exclude)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert not exclude[idx].any()


def test_topk_cosine_clusters_exercise_dense_merges():
    # Prepare: keys grow more similar to the query along the array, so every chunk beats the last
    # and the merge takes the dense (argpartition) path again and again.
    rng = np.random.default_rng(3)
    direction = np.zeros(8)
    direction[0] = 1.0
    noise = rng.standard_normal((2000, 8))
    weights = np.linspace(0.0, 10.0, 2000)[:, None]
    keys = noise + weights * direction
    queries = np.stack([direction, -direction + 0.01])

    # Execute
    scores, idx = topk_cosine(queries, keys, 6, chunk_size=50)

    # Assert
    ref_scores, ref_idx = _brute_force(queries, keys, 6)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_topk_cosine_memory_is_bounded_by_chunk():
    # Prepare: the full (64, 100_000) float32 score matrix would take 25.6 MB.
    rng = np.random.default_rng(12)
    keys = rng.standard_normal((100_000, 16), dtype=np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = rng.standard_normal((64, 16))

    # Execute
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    topk_cosine(queries, keys, 8, chunk_size=4096, keys_normalized=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Assert: a 4096-column chunk of scores is 1 MB; allow a few of them plus small buffers.
    assert peak - base < 8e6


def test_topk_cosine_small_k_prime():
    # Prepare
    keys = np.eye(3)
    queries = np.ones((4, 3))

    # Execute
    scores0, idx0 = topk_cosine(queries, keys, 0)
    scores_all, idx_all = topk_cosine(queries, keys, 10, exclude=np.array([True, False, True]))
    scores_none, idx_none = topk_cosine(queries, np.zeros((0, 3)), 5)

    # Assert
    assert scores0.shape == idx0.shape == (4, 0)
    np.testing.assert_array_equal(idx_all, [[1]] * 4)
    assert scores_none.shape == idx_none.shape == (4, 0)


# ---------------------------------------------------------------------- construction and add
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dim": 0}, "dim"),
        ({"dim": 4.0}, "dim"),
        ({"dim": 4, "max_size": 0}, "max_size"),
        ({"dim": 4, "min_per_source": -1}, "min_per_source"),
        ({"dim": 4, "max_upload": 0}, "max_upload"),
        ({"dim": 4, "max_age": -2}, "max_age"),
        ({"dim": 4, "chunk_size": 0}, "chunk_size"),
        ({"dim": True}, "dim"),
    ],
)
def test_init_rejects_bad_arguments(kwargs, match):
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        SpectralKnowledgeBase(**kwargs)


def test_add_normalises_and_records_metadata():
    # Prepare
    kb = SpectralKnowledgeBase(2)

    # Execute
    first = kb.add(np.array([[3.0, 4.0], [0.0, -2.0]]), "ct", round_num=0)
    second = kb.add(np.array([[1.0, 1.0]]), np.array(["pet"]), round_num=4)

    # Assert
    np.testing.assert_array_equal(first, [0, 1])
    np.testing.assert_array_equal(second, [2])
    assert len(kb) == 3
    np.testing.assert_allclose(kb.vectors, [[0.6, 0.8], [0.0, -1.0], [0.5**0.5, 0.5**0.5]], atol=1e-7)
    assert kb.vectors.dtype == np.float32
    assert kb.sources.tolist() == ["ct", "ct", "pet"]
    np.testing.assert_array_equal(kb.rounds, [0, 0, 4])
    np.testing.assert_array_equal(kb.hits, [0, 0, 0])
    np.testing.assert_array_equal(kb.last_hit, [-1, -1, -1])


def test_views_are_read_only():
    # Prepare
    kb = _filled_base(np.random.default_rng(0))

    # Execute / Assert
    for name in ("vectors", "sources", "rounds", "hits", "last_hit"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(kb, name)[0] = 0


def test_many_adds_grow_storage():
    # Prepare
    rng = np.random.default_rng(1)
    kb = SpectralKnowledgeBase(4, max_upload=10)
    chunks = [rng.standard_normal((10, 4)) for _ in range(30)]

    # Execute
    for r, chunk in enumerate(chunks):
        kb.add(chunk, f"site{r % 3}", round_num=r)

    # Assert
    assert len(kb) == 300
    np.testing.assert_allclose(kb.vectors, _unit(np.concatenate(chunks)), atol=1e-6)


# ---------------------------------------------------------------------- retrieve, hits, get
def test_retrieve_matches_brute_force_with_exclude_source():
    # Prepare
    rng = np.random.default_rng(7)
    kb = SpectralKnowledgeBase(16, chunk_size=33, max_upload=1000)
    kb.add(rng.standard_normal((400, 16)), "ct", round_num=0)
    kb.add(rng.standard_normal((300, 16)), "mr", round_num=0)
    kb.add(rng.standard_normal((200, 16)), "us", round_num=1)
    queries = rng.standard_normal((11, 16))

    # Execute
    scores, idx = kb.retrieve(queries, 5, exclude_source="mr", count=False)

    # Assert
    exclude = kb.sources == "mr"
    ref_scores, ref_idx = _brute_force(queries, kb.vectors, 5, exclude)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_retrieve_counts_hits_per_occurrence():
    # Prepare: three axis-aligned keys; queries close to keys 0, 0 and 2.
    kb = SpectralKnowledgeBase(3)
    kb.add(np.eye(3), ["a", "b", "c"], round_num=0)
    queries = np.array([[1.0, 0.1, 0.0], [1.0, 0.0, 0.2], [0.0, 0.0, 1.0]])

    # Execute
    _, idx = kb.retrieve(queries, 1, round_num=3)
    kb.retrieve(queries, 1, count=False, round_num=9)

    # Assert
    np.testing.assert_array_equal(idx, [[0], [0], [2]])
    np.testing.assert_array_equal(kb.hits, [2, 0, 1])
    np.testing.assert_array_equal(kb.last_hit, [3, -1, 3])


def test_retrieve_without_round_uses_latest_round():
    # Prepare
    kb = SpectralKnowledgeBase(2)
    kb.add(np.eye(2), "a", round_num=5)

    # Execute
    kb.retrieve(np.array([[1.0, 0.0]]), 1)

    # Assert
    np.testing.assert_array_equal(kb.last_hit, [5, -1])


def test_retrieve_empty_base_and_zero_k():
    # Prepare
    kb = SpectralKnowledgeBase(4)
    queries = np.ones((3, 4))

    # Execute
    empty_scores, empty_idx = kb.retrieve(queries, 8)
    kb.add(np.eye(4), "ct", round_num=0)
    zero_scores, zero_idx = kb.retrieve(queries, 0)
    only_ct_scores, _ = kb.retrieve(queries, 2, exclude_source="ct")
    unknown_scores, _ = kb.retrieve(queries, 2, exclude_source="pet", count=False)

    # Assert
    assert empty_scores.shape == empty_idx.shape == (3, 0)
    assert zero_scores.shape == zero_idx.shape == (3, 0)
    assert only_ct_scores.shape == (3, 0)
    assert unknown_scores.shape == (3, 2)
    assert kb.hits.sum() == 0


def test_get_any_shape():
    # Prepare
    kb = SpectralKnowledgeBase(2)
    kb.add(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), "a", round_num=0)

    # Execute
    out = kb.get(np.array([[2, 0], [1, 1]]))

    # Assert
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[0], [[-1.0, 0.0], [1.0, 0.0]])
    assert kb.get([]).shape == (0, 2)


# ---------------------------------------------------------------------- prune
def test_prune_keeps_rare_source_quota():
    # Prepare: a common source with 20 retrieved entries, a rare one with 3 never retrieved.
    rng = np.random.default_rng(0)
    kb = SpectralKnowledgeBase(8, min_per_source=4)
    kb.add(rng.standard_normal((20, 8)), "ct", round_num=0)
    kb.add(rng.standard_normal((3, 8)), "pet", round_num=0)
    kb._hits[:20] = np.arange(20)  # ct entry i was retrieved i times

    # Execute
    removed = kb.prune(max_size=6)

    # Assert: the 3 pet entries survive; ct keeps its 3 most-hit entries (19, 18, 17).
    assert removed == 17
    assert len(kb) == 6
    assert sorted(kb.sources.tolist()) == ["ct"] * 3 + ["pet"] * 3
    np.testing.assert_array_equal(np.sort(kb.hits[kb.sources == "ct"]), [17, 18, 19])


def test_prune_ranks_by_hits_then_recency():
    # Prepare
    kb = SpectralKnowledgeBase(2, min_per_source=0)
    for r, hits in enumerate([0, 5, 5, 1]):
        kb.add(np.array([[1.0, r + 1.0]]), "ct", round_num=r)
        kb._hits[r] = hits

    # Execute
    kb_two = SpectralKnowledgeBase.from_state_dict(kb.state_dict())
    removed_two = kb_two.prune(max_size=2)
    removed_one = kb.prune(max_size=1)

    # Assert: both entries with 5 hits survive max_size=2; with one slot the newer one (round 2) wins.
    assert (removed_two, removed_one) == (2, 3)
    np.testing.assert_array_equal(kb_two.rounds, [1, 2])
    np.testing.assert_array_equal(kb.rounds, [2])


def test_prune_default_max_size_and_noop():
    # Prepare
    rng = np.random.default_rng(1)
    kb = _filled_base(rng, {"ct": 30, "mr": 30}, max_size=10, min_per_source=2)

    # Execute
    removed = kb.prune()
    removed_again = kb.prune()

    # Assert
    assert (removed, removed_again, len(kb)) == (50, 0, 10)
    assert set(kb.sources.tolist()) == {"ct", "mr"}


def test_prune_quotas_exceeding_max_size_split_evenly():
    # Prepare: 4 sources x 5 entries, quota 5 each (20) but max_size 10 -> 2 each + 2 extra slots
    # for the two sources with the most hits (c, then a).
    kb = SpectralKnowledgeBase(3, min_per_source=5)
    rng = np.random.default_rng(2)
    for name in "abcd":
        kb.add(rng.standard_normal((5, 3)), name, round_num=0)
    kb._hits[:20] = np.repeat([3, 1, 9, 0], 5)

    # Execute
    kb.prune(max_size=10)

    # Assert
    assert kb.summary()["per_source"] == {"a": 3, "b": 2, "c": 3, "d": 2}


def test_prune_small_source_keeps_all_when_splitting():
    # Prepare: quotas 1, 8, 8 (17) into 9 slots -> level 4: 1 + 4 + 4 = 9.
    kb = SpectralKnowledgeBase(3, min_per_source=8)
    rng = np.random.default_rng(3)
    kb.add(rng.standard_normal((1, 3)), "rare", round_num=0)
    kb.add(rng.standard_normal((10, 3)), "ct", round_num=0)
    kb.add(rng.standard_normal((12, 3)), "mr", round_num=0)

    # Execute
    kb.prune(max_size=9)

    # Assert
    assert kb.summary()["per_source"] == {"rare": 1, "ct": 4, "mr": 4}


def test_prune_fewer_slots_than_sources():
    # Prepare
    kb = SpectralKnowledgeBase(3, min_per_source=2)
    for i, name in enumerate(["a", "b", "c"]):
        kb.add(np.eye(3)[i : i + 1].repeat(2, axis=0) + 0.1, name, round_num=0)
    kb._hits[:6] = [0, 0, 4, 0, 1, 0]

    # Execute
    kb.prune(max_size=2)

    # Assert: the two sources with most hits (b, then c) keep one entry each; a is gone.
    assert kb.summary()["per_source"] == {"b": 1, "c": 1}
    np.testing.assert_array_equal(np.sort(kb.hits), [1, 4])


# ---------------------------------------------------------------------- age
def test_age_drops_stale_but_keeps_quota():
    # Prepare: max_age 2. Source "old" has 4 entries from round 0 (one retrieved at round 1, one at 4);
    # source "new" has 3 entries from round 3.
    kb = SpectralKnowledgeBase(2, min_per_source=2, max_age=2)
    kb.add(np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [1.0, 0.3]]), "old", round_num=0)
    kb.add(np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0]]), "new", round_num=3)
    kb._hits[:4] = [0, 7, 1, 0]
    kb._last_hit[:4] = [-1, 1, 4, -1]

    # Execute
    removed = kb.age(current_round=5)

    # Assert: at round 5, "old" rows 0, 1, 3 are stale (last use 0, 1, 0), row 2 is fresh (4).
    # The quota of 2 keeps row 2 (fresh) and row 1 (most hits among the stale ones).
    assert removed == 2
    assert kb.sources.tolist() == ["old", "old", "new", "new", "new"]
    np.testing.assert_array_equal(kb.hits[:2], [7, 1])


def test_age_disabled_and_quota_zero():
    # Prepare
    rng = np.random.default_rng(4)
    kept = _filled_base(rng, max_age=None)
    dropped = _filled_base(rng, max_age=0, min_per_source=0)

    # Execute
    removed_kept = kept.age(100)
    removed_dropped = dropped.age(1)

    # Assert: with max_age 0 only the round-1 entries ("mr") are fresh at round 1.
    assert removed_kept == 0 and len(kept) == 11
    assert removed_dropped == 6 and dropped.sources.tolist() == ["mr"] * 5


# ---------------------------------------------------------------------- persistence
def test_state_dict_round_trip_and_save_load(tmp_path):
    # Prepare
    rng = np.random.default_rng(5)
    kb = _filled_base(rng, {"ct": 40, "mr": 25, "xray": 3}, dim=12, max_age=3, chunk_size=16)
    queries = rng.standard_normal((6, 12))
    kb.retrieve(queries, 4, round_num=2)
    path = tmp_path / "kb.npz"

    # Execute
    copy = SpectralKnowledgeBase(12)
    copy.load_state_dict(kb.state_dict())
    kb.save(path)
    loaded = SpectralKnowledgeBase.load(path)

    # Assert
    _assert_same_state(kb.state_dict(), loaded.state_dict())
    assert (loaded.max_age, loaded.chunk_size, loaded.min_per_source) == (3, 16, 8)
    expected = kb.retrieve(queries, 7, exclude_source="mr", count=False)
    for other in (copy, loaded):
        for got, want in zip(other.retrieve(queries, 7, exclude_source="mr", count=False), expected):
            np.testing.assert_array_equal(got, want)
    assert loaded.summary() == kb.summary()
    with np.load(path, allow_pickle=False) as data:
        assert data["sources"].dtype.kind == "U"


def test_state_dict_is_numpy_only():
    # Prepare
    kb = _filled_base(np.random.default_rng(6))

    # Execute
    state = kb.state_dict()

    # Assert
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["max_age"] == -1


def test_summary_hand_computed():
    # Prepare
    kb = SpectralKnowledgeBase(2)
    kb.add(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), ["ct", "ct", "mr"], round_num=2)

    # Execute
    kb.retrieve(np.array([[0.0, 1.0]]), 2)
    summary = kb.summary()

    # Assert: the query hits row 1 (ct, cos 1) and row 2 (mr, cos 0.707).
    assert summary["size"] == 3
    assert summary["per_source"] == {"ct": 2, "mr": 1}
    assert summary["hits_per_source"] == {"ct": 1, "mr": 1}
    assert summary["total_hits"] == 2


# ---------------------------------------------------------------------- bad input leaves state unchanged
def _bad_calls():
    nan = np.ones((2, 8))
    nan[1, 3] = np.nan
    inf = np.ones((2, 8))
    inf[0, 0] = np.inf
    zero = np.ones((2, 8))
    zero[1] = 0.0
    return [
        ("nan", lambda kb: kb.add(nan, "ct", 0), "NaN or Inf"),
        ("inf", lambda kb: kb.add(inf, "ct", 0), "NaN or Inf"),
        ("wrong dim", lambda kb: kb.add(np.ones((3, 4)), "ct", 0), r"shape \(3, 4\); expected \(N, 8\)"),
        ("1d", lambda kb: kb.add(np.ones(8), "ct", 0), r"shape \(8,\)"),
        ("strings", lambda kb: kb.add(np.array([["a"] * 8]), "ct", 0), "real numbers"),
        ("zero row", lambda kb: kb.add(zero, "ct", 0), r"rows \[1\] have L2 norm"),
        ("oversized", lambda kb: kb.add(np.ones((17, 8)), "ct", 0), "max_upload=16"),
        (
            "sources length",
            lambda kb: kb.add(np.ones((2, 8)), ["ct"], 0),
            r"1 ids; expected one per vector \(2\)",
        ),
        ("empty source", lambda kb: kb.add(np.ones((2, 8)), ["ct", ""], 0), r"source\[1\]"),
        ("empty source id", lambda kb: kb.add(np.ones((2, 8)), "", 0), "non-empty string"),
        ("source type", lambda kb: kb.add(np.ones((2, 8)), 3, 0), "source must be"),
        ("negative round", lambda kb: kb.add(np.ones((2, 8)), "ct", -1), "round_num"),
        ("float round", lambda kb: kb.add(np.ones((2, 8)), "ct", 1.5), "round_num"),
        ("negative k", lambda kb: kb.retrieve(np.ones((2, 8)), -1), "k must be"),
        ("float k", lambda kb: kb.retrieve(np.ones((2, 8)), 2.0), "k must be"),
        ("bool k", lambda kb: kb.retrieve(np.ones((2, 8)), True), "k must be"),
        (
            "query dim",
            lambda kb: kb.retrieve(np.ones((2, 5)), 2),
            r"queries has shape \(2, 5\); expected \(Q, 8\)",
        ),
        ("query nan", lambda kb: kb.retrieve(nan, 2), "queries must be finite"),
        ("query zero", lambda kb: kb.retrieve(zero, 2), "queries rows"),
        ("exclude type", lambda kb: kb.retrieve(np.ones((2, 8)), 2, exclude_source=""), "exclude_source"),
        ("retrieve round", lambda kb: kb.retrieve(np.ones((2, 8)), 2, round_num=-3), "round_num"),
        ("get range", lambda kb: kb.get([0, 11]), r"\[0, 11\)"),
        ("get negative", lambda kb: kb.get([-1]), r"\[0, 11\)"),
        ("get float", lambda kb: kb.get([0.5]), "integers"),
        ("prune size", lambda kb: kb.prune(max_size=0), "max_size"),
        ("age round", lambda kb: kb.age(-1), "current_round"),
    ]


@pytest.mark.parametrize("name, call, match", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_input_raises_and_leaves_state_unchanged(name, call, match):
    # Prepare
    kb = _filled_base(np.random.default_rng(8), max_upload=16)
    kb.retrieve(np.ones((1, 8)), 3, round_num=1)
    before = kb.state_dict()

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        call(kb)
    _assert_same_state(before, kb.state_dict())


def _bad_states():
    def edit(**changes):
        kb = _filled_base(np.random.default_rng(9))
        state = kb.state_dict()
        for key, value in changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value(state[key]) if callable(value) else value
        return state

    def with_nan(v):
        v = v.copy()
        v[2, 1] = np.nan
        return v

    def with_zero(v):
        v = v.copy()
        v[0] = 0.0
        return v

    return [
        ("missing vectors", edit(vectors=None), "vectors"),
        ("missing hits", edit(hits=None), "hits"),
        ("nan vectors", edit(vectors=with_nan), r"state\['vectors'\] must be finite"),
        ("zero vector", edit(vectors=with_zero), r"state\['vectors'\] rows \[0\]"),
        ("wrong dim", edit(vectors=lambda v: v[:, :4]), r"state\['vectors'\] has shape \(11, 4\)"),
        ("dim key", edit(dim=np.asarray(5)), r"state\['dim'\]"),
        ("short sources", edit(sources=lambda s: s[:-1]), r"state\['sources'\]"),
        ("bytes sources", edit(sources=lambda s: s.astype("S")), r"state\['sources'\]"),
        ("empty source", edit(sources=lambda s: np.where(np.arange(11) == 3, "", s)), "empty source"),
        ("long rounds", edit(rounds=lambda r: np.concatenate([r, r])), r"state\['rounds'\]"),
        ("float hits", edit(hits=lambda h: h.astype(float)), r"state\['hits'\]"),
        ("negative hits", edit(hits=lambda h: h - 5), r"state\['hits'\] has values in \[-5"),
        ("last_hit below -1", edit(last_hit=lambda h: h - 1), r"state\['last_hit'\]"),
        ("bad round", edit(round=np.asarray(-1)), r"state\['round'\]"),
        ("not a mapping", [1, 2], "mapping"),
    ]


@pytest.mark.parametrize("name, state, match", _bad_states(), ids=[s[0] for s in _bad_states()])
def test_bad_state_raises_naming_key_and_leaves_state_unchanged(name, state, match):
    # Prepare
    kb = _filled_base(np.random.default_rng(10), {"pet": 4})
    before = kb.state_dict()

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        kb.load_state_dict(state)
    _assert_same_state(before, kb.state_dict())


def test_from_state_dict_rejects_bad_config():
    # Prepare
    state = _filled_base(np.random.default_rng(11)).state_dict()
    del state["max_size"]

    # Execute / Assert
    with pytest.raises(ValueError, match="max_size"):
        SpectralKnowledgeBase.from_state_dict(state)
