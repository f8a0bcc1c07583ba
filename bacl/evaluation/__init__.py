"""Evaluation: LVIS box AP (equal to lvis-api, much faster) and metrics files."""

from bacl.evaluation.lvis_eval import evaluate_lvis, write_metrics

__all__ = ["evaluate_lvis", "write_metrics"]
