"""The bundles' ignite adapters: QabfMetric, the output transforms of the decollated engine output."""

from __future__ import annotations

import pytest
import torch

from omnifm_monai.metrics import QabfMetric, baseline_fusion, bicubic_from_engine, multiclass_from_engine, qabf


def test_qabf_ignite_metric_matches_the_function():
    sources = torch.rand(4, 2, 24, 24)
    fused = torch.rand(4, 1, 24, 24)
    batch = [{"pred": p, "label": s} for p, s in zip(fused, sources)]
    for baseline, image in ((None, fused), ("max", baseline_fusion(sources, "max"))):
        metric = QabfMetric(baseline=baseline)
        metric.reset()
        metric.update(metric._output_transform(batch[:2]))
        metric.update(metric._output_transform(batch[2:]))
        expected = float(qabf(image, sources[:, :1], sources[:, 1:]).mean())
        assert metric.compute() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        QabfMetric(baseline="min")


def test_multiclass_from_engine_counts_samples():
    batch = [
        {"pred": torch.tensor([0.1, 0.9]), "label": torch.tensor([0.0, 1.0])},
        {"pred": torch.tensor([0.8, 0.2]), "label": torch.tensor([1.0, 0.0])},
    ]
    pred, label = multiclass_from_engine(batch)
    assert pred.shape == (2, 2) and label.tolist() == [1, 0]


def test_bicubic_from_engine_upsamples_each_input():
    from omnifm_monai.networks.omnifm_super_resolution import bicubic_upsample

    lr, hr = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)
    preds, labels = bicubic_from_engine(2)([{"image": x, "label": y} for x, y in zip(lr, hr)])
    torch.testing.assert_close(torch.stack(preds), bicubic_upsample(lr, 2).clamp(0.0, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(labels, hr))
