"""The LVIS annotation format: one schema and one reader for training and evaluation.

``read_lvis(path_or_dict, require=..., segmentation=...)`` returns the file as column
arrays (:class:`LVISTables`); the training dataset
(:class:`bacl.data.lvis_dataset.LVISDetection`) and the evaluator
(:func:`bacl.evaluation.lvis_io.load_ground_truth`) both read through it. Importing
this package needs numpy and msgspec, not torch.
"""

from bacl.lvis_format.errors import AnnotationError
from bacl.lvis_format.polygons import MISSING, POLYGONS, RLE, Polygons
from bacl.lvis_format.ragged import RaggedArray
from bacl.lvis_format.reader import EVALUATION_KEYS, TRAINING_KEYS, read_lvis
from bacl.lvis_format.records import FREQUENCIES
from bacl.lvis_format.tables import (REQUIRABLE_KEYS, LVISTables, first_ids,
                                     image_relative_path, index_in)

__all__ = [
    "AnnotationError", "EVALUATION_KEYS", "FREQUENCIES", "LVISTables", "MISSING", "POLYGONS",
    "Polygons", "REQUIRABLE_KEYS", "RLE", "RaggedArray", "TRAINING_KEYS", "first_ids",
    "image_relative_path", "index_in", "read_lvis",
]
