"""Ignite handlers the bundles attach to their engines (MONAI keeps ``monai.handlers`` apart from ``monai.data``)."""

from .fused_image_writer import FusedImageWriter
from .prediction_writer import PredictionWriter
from .skipped_files import SkippedFilesWriter, write_skipped_csv
from .super_resolution_writer import SuperResolutionWriter
from .training_record_saver import TrainingRecordSaver
from .vocabulary_saver import VocabularySaver

__all__ = [
    "FusedImageWriter",
    "PredictionWriter",
    "SkippedFilesWriter",
    "SuperResolutionWriter",
    "TrainingRecordSaver",
    "VocabularySaver",
    "write_skipped_csv",
]
