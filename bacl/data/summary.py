"""What ``bacl data`` checked: a small JSON record of the dataset the later steps read.

For the synthetic benchmark it sits beside the generated files; for LVIS, whose files are
read in place, it is the data step's whole output, so a pipeline sees the annotation
files change through their hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_json
from ..file_hash import sha256_of
from ..params import DataParams
from .lvis_dataset import LVISDetection

SUMMARY_FILE = "summary.json"


def split_summary(dataset: LVISDetection, annotations: Path) -> dict[str, Any]:
    """Counts of one split: images, classes, classes per LVIS frequency bin, the json's hash."""
    freq = list(dataset.class_frequency)
    return {
        "annotations": str(annotations),
        "annotations_sha256": sha256_of(annotations),
        "images": len(dataset),
        "classes": dataset.num_classes,
        "rare": freq.count("r"),
        "common": freq.count("c"),
        "frequent": freq.count("f"),
    }


def write_data_summary(data: DataParams, splits: dict[str, LVISDetection]) -> Path:
    """Write ``<data.root>/summary.json`` for the loaded ``splits`` (``{"train": ds, "val": ds}``)."""
    annotations = {"train": data.train_annotations, "val": data.val_annotations}
    summary = {
        "dataset": data.dataset,
        "image_root": str(data.image_root),
        "splits": {name: split_summary(ds, annotations[name]) for name, ds in splits.items()},
    }
    path = Path(data.root) / SUMMARY_FILE
    atomic_write_json(path, summary, indent=1)
    return path
