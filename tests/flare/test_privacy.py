import math

import numpy as np
import pytest
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.privacy import SpectralTokenPrivacy, gaussian_epsilon


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
