"""Data: image I/O, the site archive, the embedded multi-modality phantom, MedMNIST, one datalist module per
task and the simulated federations (:mod:`omnifm_monai.data.federation`)."""

from .batching import training_batch_size
from .classification import class_names_for, classification_dataset, load_classification_split
from .degradation import degrade_bicubic
from .dicom_series import DicomSeriesReader, is_series_folder, series_folder_files
from .federation import (
    SCENARIOS,
    Federation,
    FusionFederation,
    SegmentationFederation,
    SuperResolutionFederation,
    VQAFederation,
    build_federation,
    build_fusion_federation,
    build_segmentation_federation,
    build_super_resolution_federation,
    build_vqa_federation,
)
from .image_io import fix_channels, from_uint8, image_reader_kind, load_image_file, resize_images, to_uint8
from .label_files import read_label_file, stratified_split
from .lazy_dataset import LoadImageFiled, file_dataset
from .medmnist import ImageClassificationData, load_medmnist
from .phantom import FINDINGS, MODALITIES, PhantomDataset, generate_anatomy, make_phantom_dataset, render
from .site_archive import SPLITS, split_cuts

__all__ = [
    "DicomSeriesReader",
    "FINDINGS",
    "MODALITIES",
    "SCENARIOS",
    "SPLITS",
    "Federation",
    "LoadImageFiled",
    "FusionFederation",
    "ImageClassificationData",
    "PhantomDataset",
    "SegmentationFederation",
    "SuperResolutionFederation",
    "VQAFederation",
    "build_federation",
    "build_fusion_federation",
    "build_segmentation_federation",
    "build_super_resolution_federation",
    "build_vqa_federation",
    "class_names_for",
    "classification_dataset",
    "degrade_bicubic",
    "file_dataset",
    "fix_channels",
    "from_uint8",
    "generate_anatomy",
    "image_reader_kind",
    "is_series_folder",
    "load_classification_split",
    "load_image_file",
    "load_medmnist",
    "make_phantom_dataset",
    "read_label_file",
    "render",
    "resize_images",
    "series_folder_files",
    "split_cuts",
    "stratified_split",
    "to_uint8",
    "training_batch_size",
]
