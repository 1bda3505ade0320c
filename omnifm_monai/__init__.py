"""OmniFM-MONAI: modality-robust, task-agnostic federated learning for medical imaging.

The public API of the OmniFM layers::

    from omnifm_monai import (
        SpectralTokenizer, SpectralKnowledgeBase, EmbeddingCrossAttention, PrefixSuffixPrompt, spalign_loss
    )
"""

from .blocks import EmbeddingCrossAttention, PrefixSuffixPrompt, PrototypeMemory
from .errors import SiteDataError, install_bundle_error_hook
from .knowledge import SpectralKnowledgeBase
from .losses import OmniFMLoss, spalign_loss
from .networks import OmniFMClassifier
from .private_state import PRIVATE_PREFIX, is_private_key, split_state_dict
from .spectral import SpectralTokenizer

__version__ = "0.1.0"

install_bundle_error_hook()  # one-line data errors under `python -m monai.bundle` only (see omnifm_monai.errors)

__all__ = [
    "EmbeddingCrossAttention",
    "OmniFMClassifier",
    "OmniFMLoss",
    "PRIVATE_PREFIX",
    "PrefixSuffixPrompt",
    "PrototypeMemory",
    "SpectralKnowledgeBase",
    "SiteDataError",
    "SpectralTokenizer",
    "is_private_key",
    "spalign_loss",
    "split_state_dict",
]
