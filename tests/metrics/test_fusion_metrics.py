"""Fusion metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnifm_monai.metrics import (
    QABF_CONSTANTS,
    baseline_fusion,
    entropy,
    fusion_metrics,
    fusion_ssim,
    fusion_vif,
    mutual_information,
    qabf,
    ssim,
    vif,
)


def _two_level(size: int = 32) -> np.ndarray:
    image = np.zeros((size, size), dtype=np.float32)
    image[:, size // 2 :] = 1.0  # half black, half white
    return image


def _perfect_edge() -> float:
    c = QABF_CONSTANTS
    q_g = c["gamma_g"] / (1 + math.exp(c["kappa_g"] * (1 - c["sigma_g"])))
    q_a = c["gamma_a"] / (1 + math.exp(c["kappa_a"] * (1 - c["sigma_a"])))
    return q_g * q_a


def test_entropy_of_flat_and_two_level_images():
    assert float(entropy(np.full((16, 16), 0.3))[0]) == pytest.approx(0.0)
    assert float(entropy(_two_level())[0]) == pytest.approx(1.0)  # two equally likely levels: 1 bit
    four = np.repeat(np.array([0.0, 1 / 3, 2 / 3, 1.0], dtype=np.float32), 8)[None].repeat(4, axis=0)
    assert float(entropy(four)[0]) == pytest.approx(2.0)


def test_mutual_information_of_an_image_with_itself_is_its_entropy():
    x = torch.rand(3, 1, 24, 24)
    np.testing.assert_allclose(mutual_information(x, x).numpy(), entropy(x).numpy(), rtol=1e-9)
    flat = torch.full_like(x, 0.5)
    np.testing.assert_allclose(mutual_information(x, flat).numpy(), 0.0, atol=1e-9)  # a flat image says nothing
    # the fusion MI sums both sources: F = A, B = A gives 2 H(A)
    np.testing.assert_allclose(mutual_information(x, x, x).numpy(), 2 * entropy(x).numpy(), rtol=1e-9)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 1, 32, 32)
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(fusion_ssim(x, x, x).numpy(), 1.0, atol=1e-5)
    assert float(ssim(x, 1 - x).mean()) < 0.0  # inverted contrast is anti-correlated


def test_qabf_of_a_source_copy_with_a_flat_partner_is_the_perfect_edge_score():
    a = torch.rand(2, 1, 32, 32)
    flat = torch.full_like(a, 0.4)
    expected = _perfect_edge()
    assert expected == pytest.approx(0.9748, abs=1e-4)
    np.testing.assert_allclose(qabf(a, a, flat).numpy(), expected, rtol=1e-6)
    # the flat image loses every edge: Q^{AF} = Q_g(0) Q_a(A) is ~0
    assert float(qabf(flat, a, flat).max()) < 1e-3
    assert float(qabf(flat, flat, flat).max()) == 0.0  # no edge anywhere: defined as 0


def test_qabf_ignores_the_sign_of_an_edge_and_halving_contrast_costs():
    a = torch.as_tensor(_two_level())[None, None]
    flat = torch.zeros_like(a)
    assert float(qabf(1 - a, a, flat)[0]) == pytest.approx(_perfect_edge(), rel=1e-6)  # inverted edge, same orientation
    half = float(qabf(0.5 * a, a, flat)[0])  # G = 0.5: Q_g = gamma_g / 2
    assert half == pytest.approx(_perfect_edge() / (1 + math.exp(0.0)) * (1 + math.exp(-7.5)), rel=1e-6)


def test_vif_of_identical_images_is_one_and_noise_lowers_it():
    x = torch.rand(2, 1, 64, 64)
    np.testing.assert_allclose(vif(x, x).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(fusion_vif(x, x, x).numpy(), 1.0, atol=1e-6)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert float(vif(x, noisy).max()) < 0.9


def test_fusion_metrics_are_floats_and_baselines():
    sources = torch.rand(3, 2, 32, 32)
    np.testing.assert_allclose(baseline_fusion(sources, "average").numpy(), sources.mean(1, keepdim=True).numpy())
    np.testing.assert_allclose(baseline_fusion(sources, "max").numpy(), sources.amax(1, keepdim=True).numpy())
    with pytest.raises(ValueError, match="median"):
        baseline_fusion(sources, "median")
    scores = fusion_metrics(baseline_fusion(sources, "average"), sources[:, :1], sources[:, 1:])
    assert set(scores) == {"qabf", "ssim", "vif", "mi", "entropy"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(B, 1, \*S\)"):
        entropy(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 12, 12))
