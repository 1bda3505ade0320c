"""Data: the embedded multi-modality phantom, MedMNIST, image folders and federated partitions."""

from .classification import class_names_for, load_classification_split
from .federation import SCENARIOS, Federation, build_federation, sample_participants
from .medmnist import ImageClassificationData, load_medmnist
from .phantom import FINDINGS, MODALITIES, PhantomDataset, generate_anatomy, make_phantom_dataset, render

__all__ = [
    "FINDINGS",
    "MODALITIES",
    "SCENARIOS",
    "Federation",
    "ImageClassificationData",
    "PhantomDataset",
    "build_federation",
    "class_names_for",
    "generate_anatomy",
    "load_classification_split",
    "load_medmnist",
    "make_phantom_dataset",
    "render",
    "sample_participants",
]
