"""Evaluation: LVIS box AP (equal to lvis-api, much faster), Fixed AP and pooled AP
(per-class detection budgets), the inference-side top-K per class, and metrics files."""

from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.lvis_eval import EvaluationError, evaluate_lvis, write_metrics
from bacl.evaluation.pooled_ap import evaluate_pooled_ap
from bacl.evaluation.protocols import PROTOCOLS, evaluate_detections, scaled_max_dets_per_class
from bacl.evaluation.topk_per_class import TopKPerClass

__all__ = ["EvaluationError", "PROTOCOLS", "TopKPerClass", "evaluate_detections", "evaluate_fixed_ap",
           "evaluate_lvis", "evaluate_pooled_ap", "scaled_max_dets_per_class", "write_metrics"]
