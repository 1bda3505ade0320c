"""The knowledge base's defences: per-source share bound, near-duplicate collapse, balanced picking."""

import numpy as np
import pytest

from omnifm_monai.knowledge import SpectralKnowledgeBase, collapse_duplicates, pick_prototypes, share_cap

E = np.eye(4)


def test_share_cap_hand_computed():
    assert share_cap(num_sources=4, min_per_source=8, max_size=2048) == 512
    assert share_cap(num_sources=300, min_per_source=8, max_size=2048) == 8  # the quota wins
    assert share_cap(num_sources=0, min_per_source=0, max_size=10) == 10


def test_prune_cuts_each_source_to_its_share_even_under_budget():
    # Prepare: max_size 8, two sources -> share 4; "big" holds 6 entries, "small" 1 (7 <= 8)
    rng = np.random.default_rng(0)
    kb = SpectralKnowledgeBase(4, max_size=8, min_per_source=1, balance_sources=True)
    kb.add(rng.standard_normal((6, 4)), "big", round_num=0)
    kb.add(rng.standard_normal((1, 4)), "small", round_num=0)
    kb.retrieve(kb.vectors[[5]], 1)  # big's row 5 gets a hit: it is kept first
    # Execute
    removed = kb.prune()
    # Assert
    assert removed == 2 and kb.summary()["per_source"] == {"big": 4, "small": 1}
    assert 1 in kb.hits.tolist()


def test_prune_without_balance_keeps_the_old_behaviour():
    kb = SpectralKnowledgeBase(4, max_size=8, min_per_source=1)
    kb.add(np.random.default_rng(0).standard_normal((6, 4)), "big", round_num=0)
    kb.add(E[:1], "small", round_num=0)
    assert kb.prune() == 0 and len(kb) == 7


def test_near_duplicates_collapse_into_the_stored_entry():
    # Prepare: a's two tokens, threshold 0.99
    kb = SpectralKnowledgeBase(4, duplicate_threshold=0.99)
    kb.add(E[:2], "a", round_num=0)
    # Execute: b copies a's first token (cos 1) and adds one new; a re-sends its second token in round 3
    b_rows = kb.add(np.stack([E[0] + 1e-3, E[2], E[2]]), "b", round_num=1)
    a_rows = kb.add(E[1:2], "a", round_num=3)
    # Assert: b stored one entry (E[2] once: the within-upload copy collapses too); a's own entry refreshed
    np.testing.assert_array_equal(b_rows, [0, 2, 2])
    np.testing.assert_array_equal(a_rows, [1])
    assert kb.sources.tolist() == ["a", "a", "b"] and kb.rounds.tolist() == [0, 3, 1]


def test_collapse_duplicates_hand_computed():
    x = np.array([[1.0, 0], [0, 1.0], [0.6, 0.8]])  # row 2 has cosine 0.8 with row 1
    is_new, match = collapse_duplicates(x, np.array([[1.0, 0]]), threshold=0.8)
    np.testing.assert_array_equal(is_new, [False, True, False])
    np.testing.assert_array_equal(match, [0, -1, -2])  # row 2 duplicates row 1 of the upload


def test_only_source_restricts_retrieval():
    kb = SpectralKnowledgeBase(4)
    kb.add(E[:2], "a", round_num=0)
    kb.add(E[2:], "b", round_num=0)
    _, idx = kb.retrieve(E[:1], 4, only_source="b")
    assert sorted(idx[0].tolist()) == [2, 3]
    assert kb.retrieve(E[:1], 4, only_source="none")[1].shape == (1, 0)
    with pytest.raises(ValueError, match="only_source"):
        kb.retrieve(E[:1], 1, only_source="")


def test_pick_prototypes_caps_each_source():
    # Prepare: rank-major columns; entries 0-3 from source 0, entries 4-5 from source 1, -1 padding
    index = np.array([[0, 4, 1, 5, 2, -1], [3, 4, 0, 5, 1, -1]])
    codes = np.array([0, 0, 0, 0, 1, 1])
    # Execute / Assert
    np.testing.assert_array_equal(pick_prototypes(index, limit=10), [0, 3, 4, 1, 5, 2])
    np.testing.assert_array_equal(pick_prototypes(index, limit=10, codes=codes, per_source=2), [0, 3, 4, 5])
    np.testing.assert_array_equal(pick_prototypes(index, limit=3, codes=codes, per_source=2), [0, 3, 4])


def test_new_options_survive_a_save_and_are_checked(tmp_path):
    kb = SpectralKnowledgeBase(4, balance_sources=True, duplicate_threshold=0.9)
    kb.add(E[:2], "a", round_num=0)
    kb.save(tmp_path / "kb.npz")
    loaded = SpectralKnowledgeBase.load(tmp_path / "kb.npz")
    assert loaded.balance_sources and loaded.duplicate_threshold == pytest.approx(0.9)
    state = kb.state_dict()
    del state["balance_sources"], state["duplicate_threshold"]  # a state saved before these options
    old = SpectralKnowledgeBase.from_state_dict(state)
    assert not old.balance_sources and old.duplicate_threshold is None
    for name, value in (("duplicate_threshold", 0.0), ("duplicate_threshold", 2), ("balance_sources", 1)):
        with pytest.raises(ValueError, match=name):
            SpectralKnowledgeBase(4, **{name: value})
