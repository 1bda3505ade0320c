import math
from pathlib import Path

import numpy as np
import pytest
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.privacy import SpectralTokenPrivacy, basic_epsilon, gaussian_epsilon, rdp_epsilon
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.strategies import get_strategy


def test_gaussian_epsilon_hand_computed():
    assert gaussian_epsilon(5.0, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)) / 5)
    with pytest.raises(ValueError):
        gaussian_epsilon(0.0, 1e-5)


def test_filter_noises_tokens_and_accounts_per_round():
    # Prepare: a result with weights and two unit tokens
    dp = SpectralTokenPrivacy(noise_multiplier=5.0, seed=0)
    tokens = np.eye(2, 8, dtype=np.float32)
    result = FLModel(params={"w": np.ones(3)}, meta={MetaKey.TOKENS: tokens, MetaKey.NUM_SAMPLES: 4})
    # Execute: two rounds
    for _ in range(2):
        shareable = dp.process(FLModelUtils.to_shareable(result), FLContext())
    out = FLModelUtils.from_shareable(shareable)
    # Assert: weights untouched, tokens changed but still unit rows, epsilon composes additively
    np.testing.assert_array_equal(out.params["w"], np.ones(3))
    noisy = out.meta[MetaKey.TOKENS]
    assert noisy.shape == (2, 8) and not np.allclose(noisy, tokens)
    np.testing.assert_allclose(np.linalg.norm(noisy, axis=1), 1.0, atol=1e-5)
    per_round, total, delta = out.meta[MetaKey.DP_EPSILON]
    assert total == pytest.approx(2 * per_round) and delta == 1e-5 and per_round <= 1


def test_results_without_tokens_pass_unchanged():
    dp = SpectralTokenPrivacy()
    shareable = FLModelUtils.to_shareable(FLModel(params={"w": np.ones(2)}, meta={MetaKey.NUM_SAMPLES: 1}))
    assert MetaKey.DP_EPSILON not in FLModelUtils.from_shareable(dp.process(shareable, FLContext())).meta


@pytest.mark.parametrize("kwargs", [{"noise_multiplier": 1.0}, {"clip": 0.0}, {"delta": 2.0}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SpectralTokenPrivacy(**kwargs)


def _rdp_by_hand(z: float, rounds: int, delta: float) -> float:
    """Gaussian RDP at sampling rate 1 (alpha / 2z^2 a round), Balle et al.'s conversion, Opacus's orders."""
    alphas = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=np.float64)
    rdp = rounds * alphas / (2 * z**2)
    return float(np.min(rdp - (math.log(delta) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)))


def test_basic_composition_adds_rounds():
    assert basic_epsilon(5.0, 3, 1e-5) == pytest.approx(3 * math.sqrt(2 * math.log(1.25e5)) / 5)
    assert basic_epsilon(5.0, 0, 1e-5) == 0.0
    with pytest.raises(ValueError, match="rounds"):
        basic_epsilon(5.0, -1, 1e-5)


@pytest.mark.parametrize("z, rounds", [(5.0, 1), (5.0, 20), (10.0, 100)])
def test_rdp_epsilon_matches_hand_formula_and_beats_basic_over_many_rounds(z, rounds):
    pytest.importorskip("opacus")
    eps = rdp_epsilon(z, rounds, 1e-5)
    assert eps == pytest.approx(_rdp_by_hand(z, rounds, 1e-5), rel=1e-9)
    if rounds >= 20:  # composition by RDP grows like sqrt(rounds), basic composition like rounds
        assert eps < basic_epsilon(z, rounds, 1e-5) / 2


def test_budget_stops_token_uploads_and_says_so(tmp_path):
    pytest.importorskip("opacus")
    # Prepare: z=5, delta=1e-5, budget 1.5 -> by hand (_rdp_by_hand): 1 round 0.79, 2 rounds 1.16,
    # 3 rounds 1.45, 4 rounds 1.69 > 1.5 (basic: 0.97, 1.94, 2.91): three releases, then none
    assert [round(_rdp_by_hand(5.0, r, 1e-5), 2) for r in (1, 2, 3, 4)] == [0.79, 1.16, 1.45, 1.69]
    ledger = str(tmp_path / "site-1" / "dp_ledger.json")
    dp = SpectralTokenPrivacy(noise_multiplier=5.0, seed=0, budget=1.5, ledger=ledger)
    result = FLModel(params={"w": np.ones(3)}, metrics={"acc": 0.5}, meta={MetaKey.TOKENS: np.eye(2, 8)})
    # Execute: five rounds
    outs = [FLModelUtils.from_shareable(dp.process(FLModelUtils.to_shareable(result), FLContext())) for _ in range(5)]
    # Assert: tokens in rounds 0-2 only; then the mark, the metric, and the weights still go up
    assert [MetaKey.TOKENS in o.meta for o in outs] == [True, True, True, False, False]
    assert [bool(o.meta.get(MetaKey.DP_BUDGET_SPENT)) for o in outs] == [False, False, False, True, True]
    assert [o.metrics["dp_budget_spent"] for o in outs] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert outs[2].meta[MetaKey.DP_RDP_EPSILON] == pytest.approx(_rdp_by_hand(5.0, 3, 1e-5))
    assert outs[4].metrics["dp_epsilon"] == pytest.approx(_rdp_by_hand(5.0, 3, 1e-5)) and dp.releases == 3
    np.testing.assert_array_equal(outs[4].params["w"], np.ones(3))
    # a restarted site reads its ledger: still spent, no fresh budget
    again = SpectralTokenPrivacy(noise_multiplier=5.0, budget=1.5, ledger=ledger)
    assert again.releases == 3
    out = FLModelUtils.from_shareable(again.process(FLModelUtils.to_shareable(result), FLContext()))
    assert MetaKey.TOKENS not in out.meta


def test_unreadable_ledger_names_the_file(tmp_path):
    ledger = tmp_path / "dp_ledger.json"
    ledger.write_text("{")
    with pytest.raises(ValueError, match="dp_ledger.json"):
        SpectralTokenPrivacy(ledger=str(ledger))
    ledger.write_text('{"releases": -2}')
    with pytest.raises(ValueError, match="releases must be an int >= 0"):
        SpectralTokenPrivacy(ledger=str(ledger))


def test_server_accepts_weights_without_tokens_from_a_site_whose_budget_is_spent():
    # Prepare: the omnifm server core (knowledge base on) and a site whose DP budget is spent
    core = ServerCore(get_strategy("omnifm", spectral=True), {"w": np.zeros(2, np.float32)}, [], token_dim=8)
    # Execute
    core.submit("site-1", {"w": np.ones(2, np.float32)}, {MetaKey.NUM_SAMPLES: 3, MetaKey.DP_BUDGET_SPENT: True})
    with pytest.raises(InvalidUploadError, match="needs spectral tokens"):
        core.submit("site-2", {"w": np.ones(2, np.float32)}, {MetaKey.NUM_SAMPLES: 3})
    record = core.close_round(["site-1", "site-2"])
    # Assert: the spent site's weights count, it added no token, the record says why
    assert record["accepted"]["site-1"]["dp_budget_spent"] is True and "site-2" in record["rejected"]
    np.testing.assert_array_equal(core.global_params["w"], np.ones(2))
    assert len(core.knowledge_base) == 0


@pytest.mark.parametrize("kwargs", [{"budget": -1.0}, {"budget": float("inf")}])
def test_bad_budget(kwargs):
    with pytest.raises(ValueError, match="budget"):
        SpectralTokenPrivacy(**kwargs)


def test_without_opacus_the_budget_falls_back_to_basic_composition(monkeypatch):
    # Prepare: no RDP accountant; basic composition at z=5: 0.97, 1.94, 2.91 -> a budget of 2.0 allows two
    monkeypatch.setattr("omnifm_monai.flare.privacy._has_opacus", False)
    dp = SpectralTokenPrivacy(noise_multiplier=5.0, seed=0, budget=2.0)
    result = FLModel(params={"w": np.ones(3)}, meta={MetaKey.TOKENS: np.eye(2, 8)})
    # Execute
    outs = [FLModelUtils.from_shareable(dp.process(FLModelUtils.to_shareable(result), FLContext())) for _ in range(3)]
    # Assert
    assert [MetaKey.TOKENS in o.meta for o in outs] == [True, True, False]
    assert MetaKey.DP_RDP_EPSILON not in outs[1].meta and outs[1].meta[MetaKey.DP_EPSILON][1] == pytest.approx(
        2 * gaussian_epsilon(5.0, 1e-5)
    )


def test_method_doc_epsilon_table_is_what_the_accountants_compute():
    pytest.importorskip("opacus")
    # Prepare: the table between the markers of docs/method.md
    doc = (Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text()
    table = doc.split("<!-- dp-epsilon-table -->")[1].split("<!-- /dp-epsilon-table -->")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    assert len(rows) == 8
    for z, rounds, basic, rdp in rows:
        # Execute / Assert: each cell, to its two decimals
        assert float(basic) == pytest.approx(basic_epsilon(float(z), int(rounds), 1e-5), abs=0.005)
        assert float(rdp) == pytest.approx(rdp_epsilon(float(z), int(rounds), 1e-5), abs=0.005)
