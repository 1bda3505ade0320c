from .backbones import ResNetTokens
from .base import TASK_HEAD, OmniFMNetwork
from .omnifm_classifier import OmniFMClassifier
from .omnifm_fusion import OmniFMFusion
from .omnifm_super_resolution import OmniFMSuperResolution
from .omnifm_unet import OmniFMUNet
from .omnifm_vqa import OmniFMVQA
from .spectral_options import SpectralOptionsLike, SpectralPathOptions

__all__ = [
    "OmniFMNetwork",
    "TASK_HEAD",
    "OmniFMClassifier",
    "OmniFMFusion",
    "OmniFMSuperResolution",
    "OmniFMUNet",
    "OmniFMVQA",
    "ResNetTokens",
    "SpectralOptionsLike",
    "SpectralPathOptions",
]
