"""FusionLoss: zero for identical sources, information weights, named errors."""

from __future__ import annotations

import pytest
import torch

from omnifm_monai.losses import FusionLoss


def test_fusion_loss_is_zero_for_identical_sources_and_weights_follow_information():
    a = torch.rand(2, 1, 16, 16)
    for information in ("gradient", "entropy"):
        loss = FusionLoss(information=information, win_size=5)
        assert float(loss(a, torch.cat([a, a], dim=1))) == pytest.approx(0.0, abs=1e-4)
    flat = torch.full_like(a, 0.5)
    weights = FusionLoss().source_weights(torch.cat([a, flat], dim=1))  # (B, 2): the textured source wins
    assert torch.allclose(weights.sum(dim=1), torch.ones(2)) and (weights[:, 0] > weights[:, 1]).all()
    with pytest.raises(ValueError, match="fused"):
        FusionLoss()(torch.rand(2, 2, 16, 16), torch.rand(2, 2, 16, 16))
    with pytest.raises(ValueError, match="information"):
        FusionLoss(information="variance")
