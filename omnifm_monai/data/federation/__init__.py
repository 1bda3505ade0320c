"""Simulated federations, one module per task on one base (:mod:`.base`: site lookup, summary table,
argument checks and the phantom site loop).

- :mod:`.classification`: :func:`build_federation` (phantom or MedMNIST folder; :mod:`.partition` and
  :mod:`.medmnist_sites` hold its partitioning);
- :mod:`.segmentation`: phantom sites, or real MSD folders (:mod:`.segmentation_sources` reads and splits them);
- :mod:`.fusion`: :func:`build_fusion_federation` (phantom or a folder of co-registered volumes with
  ``pairs.json``; :mod:`.fusion_sources` holds the folder's reading and site rules);
- :mod:`.vqa`: phantom sites, or questions derived from real MSD folders (:mod:`.vqa_sources`);
- :mod:`.super_resolution`: phantom sites, or a folder of real image folders (:mod:`.super_resolution_sources`:
  HR tiles, one modality per site).
"""

from .base import SiteFederation, markdown_table, phantom_site_samples
from .classification import FINDINGS_PER_MODALITY, SCENARIOS, Federation, build_federation
from .fusion import FUSION_SCENARIOS, FusionFederation, FusionFolderFederation, build_fusion_federation
from .medmnist_sites import MIN_CLIENTS_PER_FILE
from .segmentation import SEGMENTATION_SCENARIOS, SegmentationFederation, build_segmentation_federation
from .segmentation_sources import RealSegmentationFederation, find_segmentation_sources
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
    "RealSegmentationFederation",
    "find_segmentation_sources",
    "SR_SCENARIOS",
    "SuperResolutionFederation",
    "build_super_resolution_federation",
    "VQA_SCENARIOS",
    "VQAFederation",
    "build_vqa_federation",
    "FUSION_SCENARIOS",
    "FusionFederation",
    "FusionFolderFederation",
    "build_fusion_federation",
]
