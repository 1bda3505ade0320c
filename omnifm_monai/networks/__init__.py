from .omnifm_classifier import OmniFMClassifier

__all__ = ["OmniFMClassifier"]
