"""``evaluate_checkpoint`` tests with the evaluation's test-time settings, not the checkpoint's."""

from __future__ import annotations

import json
from collections import Counter

import torch

from bacl.engine.evaluate import evaluate_checkpoint
from bacl.engine.inference import load_trained_model
from bacl.params import load_params

from .conftest import stage_overrides


def _evaluate(stage1, tmp_path, budget: int) -> tuple[dict, Counter]:
    params = load_params(None, stage_overrides(stage1["root"], stage1_dir=stage1["dir"]) + [
        f"model.detections_per_img={budget}", f"evaluate.max_dets={budget}", "model.score_thresh=0.0"])
    out = tmp_path / f"dets{budget}"
    metrics = evaluate_checkpoint(params, stage1["final"], output=out / "metrics.json",
                                  detections_out=out / "detections.json", device="cpu")
    per_image = Counter(d["image_id"] for d in json.loads((out / "detections.json").read_text()))
    return metrics, per_image


def test_detection_budget_is_the_evaluations(stage1, tmp_path):
    saved = torch.load(stage1["final"], map_location="cpu", weights_only=True)["params"]["model"]
    small, small_counts = _evaluate(stage1, tmp_path, 2)
    large, large_counts = _evaluate(stage1, tmp_path, 40)
    assert saved["detections_per_img"] not in (2, 40)
    assert max(small_counts.values()) == 2
    assert max(large_counts.values()) > 2
    assert small["test_settings"]["detections_per_img"] == 2 and small["max_dets"] == 2
    assert large["test_settings"]["detections_per_img"] == 40
    assert small["params"]["model"]["detections_per_img"] == saved["detections_per_img"]  # as trained


def test_test_settings_replace_postprocessing_and_test_size(stage1):
    params = load_params(None, ["model.detections_per_img=7", "model.score_thresh=0.25", "model.nms_thresh=0.3",
                                "model.min_size_train=[64]", "model.min_size_test=48", "model.max_size=96"])
    model, _, _ = load_trained_model(stage1["final"], device=torch.device("cpu"), test_settings=params.model)
    heads = model.roi_heads
    assert (heads.detections_per_img, heads.score_thresh, heads.nms_thresh) == (7, 0.25, 0.3)
    assert model.transform.min_size == (48,) and model.transform.max_size == 96
    model.train()
    assert model.transform.min_size == (64,)  # training sizes untouched
