"""Evaluate a checkpoint on the validation split: inference, LVIS results file, metrics JSON."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from ..atomic_io import atomic_write_json
from ..engine.build import build_dataset, build_eval_loader
from ..engine.runtime import setup_runtime
from ..params import Params
from .inference import load_trained_model, predict_dataset
from .lvis_eval import evaluate_lvis, write_metrics

log = logging.getLogger(__name__)


def evaluate_checkpoint(params: Params, checkpoint: str | Path, *, output: str | Path,
                        detections_out: str | Path, device: str | None = None) -> dict[str, Any]:
    """Detect on ``params.data``'s val split with ``checkpoint``; write detections and metrics.

    The detector is the checkpoint's; its test-time settings are ``params.evaluate``'s.
    Under ``torchrun`` every process runs a strided share of the images and the main
    process scores the gathered detections. Returns the metrics (empty on other ranks).
    """
    runtime = setup_runtime(device)
    model, saved, _ = load_trained_model(checkpoint, device=runtime.device, test=params.evaluate)
    dataset = build_dataset(params.data, split="val")
    shard = dataset if runtime.world_size == 1 else Subset(
        dataset, list(range(runtime.rank, len(dataset), runtime.world_size)))
    loader = build_eval_loader(shard, params.evaluate)
    tic = time.perf_counter()
    records = predict_dataset(model, loader, device=runtime.device, label_to_cat_id=dataset.label_to_cat_id)
    if not runtime.is_main:
        return {}
    log.info("inference: %d images in %.1f s, %d detections", len(dataset), time.perf_counter() - tic, len(records))
    atomic_write_json(detections_out, records)
    metrics = evaluate_lvis(annotations=params.data.val_annotations, detections=records,
                            max_dets=params.evaluate.detections_per_img)
    metrics["checkpoint"] = str(checkpoint)
    metrics["params"] = saved.to_dict()  # as trained
    metrics["test_settings"] = params.evaluate.model_dump()  # as evaluated
    write_metrics(output, metrics)
    return metrics
