"""Evaluating a checkpoint uses the evaluation's test-time settings, not the checkpoint's."""

from __future__ import annotations

import json
from collections import Counter

import torch

from bacl.evaluation.checkpoint_eval import evaluate_checkpoint
from bacl.evaluation.inference import load_trained_model
from bacl.params import load_params

from ..engine.conftest import tiny_overrides


def _evaluate(stage1, tmp_path, budget: int, protocols: str = "[lvis]") -> tuple[dict, Counter]:
    params = load_params(None, tiny_overrides(stage1["root"], stage1_dir=stage1["dir"]) + [
        f"evaluate.detections_per_img={budget}", "evaluate.score_thresh=0.0", f"evaluate.protocols={protocols}"])
    out = tmp_path / f"dets{budget}"
    metrics = evaluate_checkpoint(params, stage1["final"], output=out / "metrics.json",
                                  detections_out=out / "detections.json", device="cpu")
    per_image = Counter(d["image_id"] for d in json.loads((out / "detections.json").read_text()))
    return metrics, per_image


def test_detection_budget_is_the_evaluations(stage1, tmp_path):
    saved = torch.load(stage1["final"], map_location="cpu", weights_only=True)["params"]["evaluate"]
    small, small_counts = _evaluate(stage1, tmp_path, 2)
    large, large_counts = _evaluate(stage1, tmp_path, 40)
    assert saved["detections_per_img"] not in (2, 40)
    assert max(small_counts.values()) == 2 < max(large_counts.values())
    assert small["test_settings"]["detections_per_img"] == 2 and small["max_dets"] == 2
    assert large["test_settings"]["detections_per_img"] == 40
    assert small["params"]["evaluate"]["detections_per_img"] == saved["detections_per_img"]  # as trained


def test_one_inference_serves_every_protocol(stage1, tmp_path):
    metrics, per_image = _evaluate(stage1, tmp_path, 2, protocols="[lvis, lvis@5, fixed@4, pooled@3]")
    assert max(per_image.values()) == 5  # the file holds the largest per-image budget
    protocols = metrics["protocols"]
    assert list(protocols) == ["lvis", "lvis@5", "fixed@4", "pooled@3"]
    assert (protocols["lvis"]["max_dets"], protocols["lvis@5"]["max_dets"]) == (2, 5)
    assert (protocols["fixed@4"]["protocol"], protocols["fixed@4"]["max_dets_per_class"]) == ("fixed", 4)
    assert protocols["pooled@3"]["protocol"] == "pooled" and protocols["pooled@3"]["max_dets"] is None
    assert metrics["AP"] == protocols["lvis"]["AP"] and metrics["protocol"] == "lvis"  # the first is the headline
    # Fixed AP's detections come from the same pass without a per-image cap: at most 4 per class.
    assert protocols["fixed@4"]["num_detections"] <= 4 * 3


def test_test_settings_replace_postprocessing_and_test_size(stage1):
    params = load_params(None, ["evaluate.detections_per_img=7", "evaluate.score_thresh=0.25",
                                "evaluate.nms_thresh=0.3", "evaluate.min_size=48", "evaluate.max_size=96"])
    model, saved, _ = load_trained_model(stage1["final"], device=torch.device("cpu"), test=params.evaluate)
    heads = model.roi_heads
    assert (heads.detections_per_img, heads.score_thresh, heads.nms_thresh) == (7, 0.25, 0.3)
    assert model.transform.min_size == (48,) and model.transform.max_size == 96
    assert saved.representation.min_sizes == [64] != [48]
    model.train()
    assert model.transform.min_size == (64,)  # the training sizes the checkpoint was trained with


def test_by_default_a_checkpoint_tests_with_its_own_settings(stage1):
    model, saved, _ = load_trained_model(stage1["final"], device=torch.device("cpu"))
    assert model.roi_heads.detections_per_img == saved.evaluate.detections_per_img
    assert model.transform.min_size == (saved.evaluate.min_size,)
