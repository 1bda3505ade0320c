"""Simulated federations, one module per task on one base (:mod:`.base`: site lookup, summary table,
argument checks and the phantom site loop).

- :mod:`.classification`: :func:`build_federation` (phantom or MedMNIST folder; :mod:`.partition` and
  :mod:`.medmnist_sites` hold its partitioning);
- :mod:`.super_resolution`: phantom or a folder of real image folders (:mod:`.super_resolution_sources`: HR
  tiles, one modality per site);
- :mod:`.segmentation`, :mod:`.vqa`, :mod:`.fusion`: phantom federations.
"""

from .base import SiteFederation, markdown_table, phantom_site_samples
from .classification import FINDINGS_PER_MODALITY, SCENARIOS, Federation, build_federation
from .fusion import FUSION_SCENARIOS, FusionFederation, build_fusion_federation
from .medmnist_sites import MIN_CLIENTS_PER_FILE
from .segmentation import SEGMENTATION_SCENARIOS, SegmentationFederation, build_segmentation_federation
from .super_resolution import SR_SCENARIOS, SuperResolutionFederation, build_super_resolution_federation
from .vqa import VQA_SCENARIOS, VQAFederation, build_vqa_federation

__all__ = [
    "SiteFederation",
    "markdown_table",
    "phantom_site_samples",
    "SCENARIOS",
    "FINDINGS_PER_MODALITY",
    "MIN_CLIENTS_PER_FILE",
    "Federation",
    "build_federation",
    "SEGMENTATION_SCENARIOS",
    "SegmentationFederation",
    "build_segmentation_federation",
    "SR_SCENARIOS",
    "SuperResolutionFederation",
    "build_super_resolution_federation",
    "VQA_SCENARIOS",
    "VQAFederation",
    "build_vqa_federation",
    "FUSION_SCENARIOS",
    "FusionFederation",
    "build_fusion_federation",
]
