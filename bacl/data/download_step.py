"""``bacl download``: the pipeline's first step for LVIS.

Fetches (or links) the LVIS annotations and COCO 2017 images where the parameters read
them, and records what it did in ``<data.lvis.download.dir>/<dataset>.json``. Files
already in place are not fetched again; for the synthetic benchmark there is nothing to
fetch (``bacl data`` generates it) and the record says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic_io import atomic_write_json
from ..params import DataParams, ParamError

log = logging.getLogger(__name__)


def download_record(data: DataParams) -> Path:
    """Where ``bacl download`` records what it did for ``data.dataset``."""
    return Path(data.lvis.download.dir) / f"{data.dataset}.json"


def download_data(data: DataParams, *, progress: bool = True) -> Path:
    """Fetch or link what ``data`` names (LVIS), or nothing (synthetic); returns the record's path."""
    record = download_record(data)
    if data.dataset == "synthetic":
        atomic_write_json(record, {"dataset": "synthetic", "downloaded": "nothing: bacl data generates it"}, indent=1)
        log.info("data.dataset is synthetic: nothing to download (bacl data generates it)")
        return record
    if data.train_annotations.is_file() and data.val_annotations.is_file() and data.image_root.is_dir():
        atomic_write_json(record, {"dataset": data.dataset, "downloaded": "nothing: the annotation files and the "
                                   "image folder are in place (bacl data checks every image)",
                                   "annotations": [str(data.train_annotations), str(data.val_annotations)],
                                   "image_root": str(data.image_root)}, indent=1)
        log.info("%s: annotations and images already in place; nothing to download", data.dataset)
        return record
    from .download import prepare_lvis
    from .lvis_sources import annotation_file, normalise_version

    version = normalise_version(data.dataset)
    lvis_dir = data.train_annotations.parent
    for split, path, key in (("train", data.train_annotations, "data.lvis.train_annotations"),
                             ("val", data.val_annotations, "data.lvis.val_annotations")):
        wanted = lvis_dir / annotation_file(version, split)
        if path != wanted:
            raise ParamError(f"{key}: the download step writes {wanted} for {data.dataset}, got {path}")
    settings = data.lvis.download
    summary = prepare_lvis(version=version, lvis_dir=lvis_dir, coco_dir=data.image_root,
                           downloads_dir=settings.dir, mirror=settings.mirror, link_coco=settings.link_coco,
                           keep_archives=settings.keep_archives, timeout=settings.timeout_s,
                           retries=settings.retries, progress=progress)
    atomic_write_json(record, {"dataset": data.dataset, **summary}, indent=1)
    log.info("%s ready: annotations in %s, images in %s; record in %s", data.dataset, lvis_dir, data.image_root,
             record)
    return record
