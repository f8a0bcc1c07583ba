"""Fixed AP: LVIS box AP with a detection budget per class instead of per image.

Dave et al. 2021, "Evaluating Large-Vocabulary Object Detectors: The Devil is in the
Details" (github achalddave/large-vocab-devil, ``scripts/evaluate_ap_fixed.py``),
adopted by the LVIS 2021 challenge (lvis-api branch ``lvis_challenge_2021``,
``LVISResults(max_dets_per_cat=10000, max_dets_per_im=-1)``):

1. per category, keep the ``K`` best-scored detections over the whole results list
   (LVIS: K = 10,000), ties in score going to the detection listed first (the
   scripts' stable ``sorted(..., reverse=True)[:K]``). The budget is taken before
   any of lvis-api's filters, so detections that the federated rules later ignore
   (a category neither annotated nor verified absent in the image) or that lvis-api
   drops (zero area) still use it up;
2. evaluate those with the standard LVIS evaluator and no per-image cap
   (``LVISResults(..., max_dets=-1)``): the same matching, federated rules, area
   ranges, per-category AP and r/c/f means as ``evaluate_lvis``.

Every category's AP depends only on its own detections and their order, so a
rescoring that keeps each category's order (any strictly increasing map per class,
e.g. calibration) leaves Fixed AP unchanged; under the 300-per-image cap it changes
which detections survive, and so the AP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bacl.evaluation.lvis_eval import (check_positive_int, locate_detections, lvis_precision,
                                       per_class_metrics, top_scored_per_group)
from bacl.evaluation.lvis_io import (Detections, GroundTruth, PathLike, load_detections,
                                     load_ground_truth)

#: The authors' budget for LVIS (v0.5 and v1 val), and the 2021 challenge's.
LVIS_MAX_DETS_PER_CLASS = 10_000


def keep_top_per_class(gt: GroundTruth, dets: Detections,
                       max_dets_per_class: int) -> tuple[Detections, np.ndarray]:
    """The ``max_dets_per_class`` best-scored detections of each category.

    Returns them in input order (which still breaks ties in score downstream), and
    ``(K,)`` int64, how many detections each category had before the budget. Unknown
    image or category ids raise :class:`~bacl.evaluation.lvis_eval.EvaluationError`.
    """
    _, cat_idx = locate_detections(gt, dets)
    counts = np.bincount(cat_idx, minlength=len(gt.category_ids)).astype(np.int64)
    keep = top_scored_per_group(cat_idx, dets.scores, max_dets_per_class)
    if len(keep) < len(dets.scores):
        dets = Detections(image_ids=dets.image_ids[keep], category_ids=dets.category_ids[keep],
                          boxes=dets.boxes[keep], scores=dets.scores[keep])
    return dets, counts


def budget_settings(protocol: str, max_dets_per_class: int, counts: np.ndarray) -> dict[str, Any]:
    """The settings a per-class-budget protocol reports, with ``num_classes_below_budget``:
    categories that had fewer than ``max_dets_per_class`` detections (inference did not
    fill their budget, so their AP may be lower than the protocol allows)."""
    return {"protocol": protocol, "max_dets": None, "max_dets_per_class": max_dets_per_class,
            "num_classes_below_budget": int((counts < max_dets_per_class).sum())}


def evaluate_fixed_ap(*, annotations: PathLike | Mapping[str, Any],
                      detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
                      max_dets_per_class: int = LVIS_MAX_DETS_PER_CLASS) -> dict[str, Any]:
    """Fixed AP of ``detections`` against ``annotations``.

    Args:
        annotations, detections: as for :func:`~bacl.evaluation.lvis_eval.evaluate_lvis`
            (input order breaks ties in score, for the budget and the ranking).
        max_dets_per_class: ``K``, detections kept per category over the whole set
            (LVIS: 10,000; see ``docs/evaluation_protocols.md`` for a smaller set).

    Returns:
        The keys of ``evaluate_lvis``: ``AP, AP50, AP75, APs, APm, APl, APr, APc,
        APf`` (-1.0 where undefined), ``per_class`` (AP None for categories without
        ground truth), ``num_images``, ``num_detections`` (kept by the budget), and
        the settings ``protocol`` ("fixed"), ``max_dets`` (None: no per-image cap) and
        ``max_dets_per_class``, and ``num_classes_below_budget`` (categories with fewer
        detections than the budget).
    """
    max_dets_per_class = check_positive_int("max_dets_per_class", max_dets_per_class)
    gt = load_ground_truth(annotations)
    dets, counts = keep_top_per_class(gt, load_detections(detections), max_dets_per_class)
    precision, num_kept = lvis_precision(gt, dets, max_dets=None)
    return {**per_class_metrics(gt, precision, num_detections=num_kept),
            **budget_settings("fixed", max_dets_per_class, counts)}
