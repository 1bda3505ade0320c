from .base import TASK_HEAD, OmniFMNetwork
from .omnifm_classifier import OmniFMClassifier

__all__ = ["OmniFMNetwork", "TASK_HEAD", "OmniFMClassifier"]
