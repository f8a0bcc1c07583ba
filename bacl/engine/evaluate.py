"""Evaluate a checkpoint on the validation split: inference, LVIS results file, metrics JSON."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from ..evaluation.lvis_eval import evaluate_lvis, write_metrics
from ..params import Params
from .build import build_dataset, build_eval_loader
from .inference import TEST_SETTING_KEYS, load_trained_model, predict_dataset, write_json
from .train import setup_runtime

log = logging.getLogger(__name__)


def evaluate_checkpoint(params: Params, checkpoint: str | Path, *, output: str | Path,
                        detections_out: str | Path, device: str | None = None) -> dict[str, Any]:
    """Detect on ``params.data``'s val split with ``checkpoint``; write detections and metrics.

    The detector is the checkpoint's; its test-time settings (``model.detections_per_img``,
    ``score_thresh``, ``nms_thresh``, ``min_size_test``, ``max_size``) are ``params``'.

    Under ``torchrun`` every process runs a strided share of the images and the main
    process scores the gathered detections. Returns the metrics (empty on other ranks).
    """
    runtime = setup_runtime(device)
    # Test-time keys (detection budget, thresholds, test size) are the evaluation's, not the checkpoint's.
    model, saved, _ = load_trained_model(checkpoint, device=runtime.device, test_settings=params.model)
    dataset = build_dataset(params.data, split="val")
    shard = dataset if runtime.world_size == 1 else Subset(
        dataset, list(range(runtime.rank, len(dataset), runtime.world_size)))
    loader = build_eval_loader(shard, params.evaluate)
    tic = time.perf_counter()
    records = predict_dataset(model, loader, device=runtime.device, label_to_cat_id=dataset.label_to_cat_id)
    if not runtime.is_main:
        return {}
    log.info("inference: %d images in %.1f s, %d detections", len(dataset), time.perf_counter() - tic, len(records))
    write_json(detections_out, records)
    metrics = evaluate_lvis(annotations=params.data.val_annotations, detections=records,
                            max_dets=params.evaluate.max_dets)
    metrics["checkpoint"] = str(checkpoint)
    metrics["params"] = saved.to_dict()  # as trained
    metrics["test_settings"] = {key: getattr(params.model, key) for key in TEST_SETTING_KEYS}  # as evaluated
    write_metrics(output, metrics)
    return metrics
