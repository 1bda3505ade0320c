"""Multi-modal image fusion in the federated pipeline: the phantom pair federation and per-site fusion metrics."""

from __future__ import annotations

from collections.abc import Callable

from monai.bundle import ConfigParser
from torch import nn

from omnifm_monai.tasks.base import FederatedTask, predict_in_batches, stack_images

__all__ = ["FusionTask"]


class FusionTask(FederatedTask):
    """Unsupervised fusion of two co-registered sources (``bundles/omnifm_fusion``).

    Headline metric: Qabf (Xydeas-Petrovic edge preservation): in [0, 1], higher is better, it needs no
    fused ground truth and, unlike SSIM against the sources, it is not maximised by copying one source or
    by averaging (averaging halves every edge's contrast). Every metric is also reported for the pixel-wise
    ``average`` and ``max`` fusion of the same test pairs, the floors a learned fusion should beat.
    """

    name = "fusion"
    bundle = "omnifm_fusion"
    headline_metric = "qabf"
    report_metrics = ("qabf", "ssim", "vif", "mi", "entropy", "average_qabf", "max_qabf")
    uses_num_classes = False

    @staticmethod
    def federation_builder():
        from omnifm_monai.data.federation import build_fusion_federation

        return build_fusion_federation

    def test_evaluator(
        self, dataset_dir: str, parser: ConfigParser, split: str = "test"
    ) -> Callable[[nn.Module], dict[str, float]]:
        """Qabf, SSIM, VIF, MI and EN of the network's fused test images, and of the average / max baselines."""
        from omnifm_monai.data.fusion import load_fusion_split
        from omnifm_monai.metrics.fusion import baseline_fusion, fusion_metrics

        image_size, num_samples, seed = (parser.get_parsed_content(k) for k in ("image_size", "num_samples", "seed"))
        items = load_fusion_split(dataset_dir, split, image_size=image_size, num_samples=num_samples, seed=seed)
        sources = stack_images(items)  # (N, 2, S, S), stacked once and reused every round
        source_a, source_b = sources[:, :1], sources[:, 1:2]
        baselines = {}
        for rule in ("average", "max"):  # the same every round: computed once
            scores = fusion_metrics(baseline_fusion(sources, rule), source_a, source_b)
            baselines.update({f"{rule}_{k}": v for k, v in scores.items()})

        def evaluate(network: nn.Module) -> dict[str, float]:
            fused = predict_in_batches(network, sources).float().clamp(0.0, 1.0)  # (N, 1, S, S)
            return {**fusion_metrics(fused, source_a, source_b), **baselines}

        return evaluate
