"""The knowledge-base takeover attack of issue 17 (item 5), in-process through ServerCore.

Three honest sites upload 8 class centroids a round; the attacker (site-9) uploads its 8 tokens in
round 0, then every round the cap (256 rows) of copies of the prototypes it was sent. On main it
held 1,760+ of 2,048 entries after 12 rounds and supplied every prototype the honest sites got.
"""

import numpy as np
import pytest

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.strategies import get_strategy

DIM, HONEST, ATTACKER = 16, ("site-1", "site-2", "site-3"), "site-9"


def _attack(noise: float, rounds: int = 12, **options):
    rng = np.random.default_rng(0)
    core = ServerCore(
        get_strategy("omnifm", spectral=True), {"w": np.zeros(3, np.float32)}, set(), token_dim=DIM, **options
    )
    centroids = {s: rng.standard_normal((8, DIM)) for s in (*HONEST, ATTACKER)}
    for _ in range(rounds):
        sent = {s: core.payload(s)[1][MetaKey.PROTOTYPES] for s in (*HONEST, ATTACKER)}
        for site in (*HONEST, ATTACKER):
            tokens = centroids[site] + 0.01 * rng.standard_normal((8, DIM))  # a little drift each round
            if site == ATTACKER and len(sent[site]):
                tokens = sent[site][np.arange(256) % len(sent[site])] + noise * rng.standard_normal((256, DIM))
            core.submit(site, {"w": np.ones(3, np.float32)}, {MetaKey.NUM_SAMPLES: 10, MetaKey.TOKENS: tokens})
        core.close_round([*HONEST, ATTACKER])
    return core, sent


def _from_attacker(core, prototypes):
    """How many of ``prototypes`` are the attacker's entries (each matched to its stored row)."""
    kb = core.knowledge_base
    return int((kb.sources[np.argmax(prototypes @ kb.vectors.T, axis=1)] == ATTACKER).sum())


def test_exact_copies_of_the_prototypes_add_nothing():
    # Execute: the attack as reported (copies of what the attacker is sent)
    core, _ = _attack(noise=0.0)
    # Assert: every copy collapsed into the entry it copies; each site holds its 8 centroids (refreshed)
    counts = core.knowledge_base.summary()["per_source"]
    assert counts == {"site-1": 8, "site-2": 8, "site-3": 8, ATTACKER: 8}


def test_noisy_copies_are_held_to_the_share_bound():
    # Prepare: copies with noise (cosine about 0.98) escape the duplicate collapse
    core, sent = _attack(noise=0.05)
    kb = core.knowledge_base
    # Assert: the attacker holds at most max(min_per_source, 2048 // 4 sources) = 512 entries
    assert kb.summary()["per_source"][ATTACKER] == 512
    # ... and with the default retrieval it still fills the honest sites' prototypes (documented)
    assert all(_from_attacker(core, sent[s]) == len(sent[s]) for s in HONEST)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_balanced_prototypes_bound_the_attackers_share_of_what_sites_receive(noise):
    # Execute
    core, sent = _attack(noise=noise, balance_prototypes=True)
    # Assert: 3 other sources for each honest site -> at most ceil(64 / 3) = 22 from the attacker,
    # and the other two honest sites' 8 centroids each are all sent
    for site in HONEST:
        assert _from_attacker(core, sent[site]) <= 22
        assert len(sent[site]) - _from_attacker(core, sent[site]) == 16
