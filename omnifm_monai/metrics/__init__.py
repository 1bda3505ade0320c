"""Metrics of the five tasks, as plain functions (the test evaluators) and ignite adapters (the bundles).

- :mod:`.classification`: per-site accuracy / macro-F1, over the union and the site's own label space;
- :mod:`.segmentation`: Dice and HD95 in mm (MONAI's ``HausdorffDistanceMetric``, finite conventions);
- :mod:`.super_resolution`: PSNR (capped at :data:`MAX_PSNR`) and SSIM;
- :mod:`.vqa`: exact-match answer accuracy, by answer and question type;
- :mod:`.fusion`: EN, MI, SSIM, Qabf, VIF of a fused image against its sources, and the baseline fusions;
- :mod:`.engine`: the ``output_transform``s and the ignite metric the bundles' ``train.json`` name.
"""

from .classification import classification_metrics, macro_f1
from .engine import QabfMetric, bicubic_from_engine, multiclass_from_engine, ssim_pairs_from_engine
from .fusion import (
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
from .segmentation import HausdorffDistance95, Spacing, hausdorff_distance_95, image_diagonal, segmentation_metrics
from .super_resolution import MAX_PSNR, image_quality
from .vqa import vqa_metrics

__all__ = [
    "HausdorffDistance95",
    "MAX_PSNR",
    "QABF_CONSTANTS",
    "QabfMetric",
    "Spacing",
    "baseline_fusion",
    "bicubic_from_engine",
    "classification_metrics",
    "entropy",
    "fusion_metrics",
    "fusion_ssim",
    "fusion_vif",
    "hausdorff_distance_95",
    "image_diagonal",
    "image_quality",
    "macro_f1",
    "multiclass_from_engine",
    "mutual_information",
    "qabf",
    "segmentation_metrics",
    "ssim",
    "ssim_pairs_from_engine",
    "vif",
    "vqa_metrics",
]
