"""``bacl data``: make the dataset ready and write what was checked.

The synthetic benchmark is generated under ``data.root`` (and reused when the files were
generated with the same parameters); LVIS files are checked in place. Either way both
splits are loaded once, which runs every annotation and image-file check, and
``<data.root>/summary.json`` records what the later steps read.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..atomic_io import atomic_write_json
from ..params import DataParams, ParamError
from .lvis_dataset import LVISDetection
from .summary import write_data_summary

log = logging.getLogger(__name__)

GENERATED_WITH = "generated_with.json"


def prepare_data(data: DataParams, *, force: bool = False) -> Path:
    """Generate (synthetic) or check (LVIS) ``data``; returns the summary file's path."""
    if data.dataset == "synthetic":
        _generate_synthetic(data, force=force)
    splits = {}
    for split, annotations in (("train", data.train_annotations), ("val", data.val_annotations)):
        dataset = splits[split] = LVISDetection(annotation_file=annotations, image_root=data.image_root)
        freq = list(dataset.class_frequency)
        log.info("%s: %d images, %d classes (r/c/f = %d/%d/%d) from %s", split, len(dataset), dataset.num_classes,
                 freq.count("r"), freq.count("c"), freq.count("f"), annotations)
    summary = write_data_summary(data, splits)
    log.info("checked; summary in %s", summary)
    return summary


def _generate_synthetic(data: DataParams, *, force: bool) -> None:
    from .synthetic import generate_synthetic_lvis
    from .synthetic_plan import SpecError

    settings = data.synthetic
    stamp = Path(data.root) / GENERATED_WITH
    wanted = settings.model_dump()
    current = json.loads(stamp.read_text()) if stamp.exists() else None
    if current == wanted and data.train_annotations.exists() and data.val_annotations.exists() and not force:
        log.info("%s already holds the benchmark for these parameters (--force regenerates it)", data.root)
        return
    tic = time.perf_counter()
    try:
        generate_synthetic_lvis(out_dir=data.root, seed=settings.seed, num_train_images=settings.num_train_images,
                                num_val_images=settings.num_val_images, image_size=settings.image_size)
    except SpecError as err:
        raise ParamError(f"data.synthetic.{err.key}: {err}") from None
    atomic_write_json(stamp, wanted)
    log.info("synthetic benchmark written to %s in %.1f s", data.root, time.perf_counter() - tic)
