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
from .lvis_eval import write_metrics
from .protocols import evaluate_protocols

log = logging.getLogger(__name__)


def evaluate_checkpoint(params: Params, checkpoint: str | Path, *, output: str | Path,
                        detections_out: str | Path, device: str | None = None) -> dict[str, Any]:
    """Detect on ``params.data``'s val split with ``checkpoint``; write detections and metrics.

    The detector is the checkpoint's; its test-time settings are ``params.evaluate``'s,
    and one inference serves every protocol of ``evaluate.protocols``
    (:func:`bacl.evaluation.protocols.evaluate_protocols`). ``detections_out`` gets the
    per-image-capped detections (those of the ``lvis`` protocols), or the per-class ones
    when no ``lvis`` protocol is asked for. Under ``torchrun`` every process runs a strided
    share of the images and the main process scores the gathered detections. Returns the
    metrics (empty on other ranks).
    """
    settings = params.evaluate
    budgets = settings.budgets()
    per_image_cap = max((b for _, kind, b in budgets if kind == "lvis"), default=None)
    per_class_budget = max((b for _, kind, b in budgets if kind != "lvis"), default=None)
    runtime = setup_runtime(device)
    model, saved, _ = load_trained_model(checkpoint, device=runtime.device, test=settings)
    dataset = build_dataset(params.data, split="val")
    shard = dataset if runtime.world_size == 1 else Subset(
        dataset, list(range(runtime.rank, len(dataset), runtime.world_size)))
    loader = build_eval_loader(shard, settings)
    tic = time.perf_counter()
    per_image, per_class = predict_dataset(model, loader, device=runtime.device,
                                           label_to_cat_id=dataset.label_to_cat_id,
                                           score_thresh=settings.score_thresh, max_dets_per_img=per_image_cap,
                                           max_dets_per_class=per_class_budget)
    if not runtime.is_main:
        return {}
    log.info("inference: %d images in %.1f s", len(dataset), time.perf_counter() - tic)
    atomic_write_json(detections_out, per_image if per_image is not None else per_class)
    metrics = evaluate_protocols(annotations=params.data.val_annotations, budgets=budgets, per_image=per_image,
                                 per_class=per_class)
    metrics["checkpoint"] = str(checkpoint)
    metrics["params"] = saved.to_dict()  # as trained
    metrics["test_settings"] = settings.model_dump()  # as evaluated
    write_metrics(output, metrics)
    return metrics
