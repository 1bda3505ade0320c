"""Training losses: SPAlign and the wrapper that adds it to any task loss, and the unsupervised fusion loss."""

from .fusion import FusionLoss, source_information
from .spalign import OmniFMLoss, spalign_loss

__all__ = ["FusionLoss", "OmniFMLoss", "source_information", "spalign_loss"]
