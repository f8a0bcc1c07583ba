"""Pooled AP: one precision-recall curve over a pool of categories, detections ranked
across classes.

Dave et al. 2021 (github achalddave/large-vocab-devil, ``scripts/evaluate_ap_pooled.py``
and ``LVISPooledEval`` in ``lvdevil/eval_wrapper.py``):

1. the detection budget of Fixed AP: the ``K`` best-scored detections per category
   over the whole set (K = 10,000), ties to the detection listed first, no per-image
   cap (see ``bacl/evaluation/fixed_ap.py``);
2. lvis-api's per-image evaluation unchanged: each detection is matched to the boxes
   of its own category in its image, with the federated rules (a detection of a
   category neither annotated nor verified absent in the image is dropped; an
   unmatched detection of a not-exhaustively annotated category is ignored) and the
   area ranges;
3. the accumulation pools categories: for the pool "all" (every category) and for
   "r", "c", "f" (the categories of that frequency), all the pool's detections are
   ranked together by score, true and false positives are counted down that one list,
   recall is over all the pool's boxes, and the precision at 101 recall levels is
   averaged over the IoU thresholds. A category without any box still adds its
   detections (on images where it is verified absent) as false positives; a pool
   without boxes is undefined (-1).

Ranking across classes rewards scores that are comparable between classes
(calibration), which Fixed AP, ranking each class on its own, does not see.

Ties in score are ranked by image (ascending id), then category (ascending id), then
input order: the order ``LVISPooledEval`` lists the per-image results in before its
stable sort by score.

Reported as the usual keys: ``AP`` is the pool "all" (the authors' ``AP-pooled-all``),
``APr`` / ``APc`` / ``APf`` the frequency pools (``AP-pooled-r`` ...), ``AP50`` /
``AP75`` the pool "all" at one IoU threshold and ``APs`` / ``APm`` / ``APl`` the pool
"all" in one area range (the authors' ``_summarize_pool`` with those arguments; their
script evaluates the "all" area range only by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bacl.evaluation.fixed_ap import LVIS_MAX_DETS_PER_CLASS, budget_settings, keep_top_per_class
from bacl.evaluation.lvis_eval import (AREA_NAMES, IOU_THRESHOLDS, MatchedDetections,
                                       accumulate_precision, check_positive_int,
                                       match_detections, mean_valid)
from bacl.evaluation.lvis_io import FREQUENCIES, GroundTruth, PathLike, load_detections, load_ground_truth

POOLS = ("all",) + FREQUENCIES


def pooled_precision(gt: GroundTruth, matched: MatchedDetections) -> dict[str, np.ndarray]:
    """Precision ``(T, R, A)`` of each pool in :data:`POOLS` (-1 where it has no box)."""
    all_precision = accumulate_precision(matched, np.zeros(len(matched.category), np.int64),
                                         matched.num_gt.sum(axis=0, keepdims=True))
    freq = gt.frequency_index
    num_gt = np.stack([matched.num_gt[freq == f].sum(axis=0) for f in range(len(FREQUENCIES))])
    by_frequency = accumulate_precision(matched, freq[matched.category], num_gt)
    out = {"all": all_precision[:, :, 0]}
    out.update({name: by_frequency[:, :, f] for f, name in enumerate(FREQUENCIES)})
    return out


def summarize_pooled(precision: dict[str, np.ndarray]) -> dict[str, float]:
    """The nine summary numbers from each pool's precision ``(T, R, A)``."""
    all_pool, all_area = precision["all"], AREA_NAMES.index("all")
    out = {"AP": mean_valid(all_pool[:, :, all_area])}
    for key, thr in (("AP50", 0.50), ("AP75", 0.75)):
        out[key] = mean_valid(all_pool[np.flatnonzero(IOU_THRESHOLDS == thr)][:, :, all_area])
    for key, name in (("APs", "small"), ("APm", "medium"), ("APl", "large")):
        out[key] = mean_valid(all_pool[:, :, AREA_NAMES.index(name)])
    for freq in FREQUENCIES:
        out[f"AP{freq}"] = mean_valid(precision[freq][:, :, all_area])
    return out


def evaluate_pooled_ap(*, annotations: PathLike | Mapping[str, Any],
                       detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
                       max_dets_per_class: int = LVIS_MAX_DETS_PER_CLASS) -> dict[str, Any]:
    """Pooled AP of ``detections`` against ``annotations``.

    Args:
        annotations, detections: as for :func:`~bacl.evaluation.lvis_eval.evaluate_lvis`
            (input order breaks ties in score).
        max_dets_per_class: ``K``, detections kept per category over the whole set
            (LVIS: 10,000).

    Returns:
        ``AP, AP50, AP75, APs, APm, APl, APr, APc, APf`` (see the module docstring;
        -1.0 where a pool has no box), ``num_images``, ``num_detections`` (kept by the
        budget), the settings ``protocol`` ("pooled"), ``max_dets`` (None: no
        per-image cap) and ``max_dets_per_class``, and ``num_classes_below_budget``.
        There is no ``per_class``: pooled AP has no per-category value.
    """
    max_dets_per_class = check_positive_int("max_dets_per_class", max_dets_per_class)
    gt = load_ground_truth(annotations)
    dets, counts = keep_top_per_class(gt, load_detections(detections), max_dets_per_class)
    matched = match_detections(gt, dets, max_dets=None)
    metrics: dict[str, Any] = summarize_pooled(pooled_precision(gt, matched))
    metrics.update(num_images=len(gt.image_ids), num_detections=int(matched.num_kept))
    metrics.update(budget_settings("pooled", max_dets_per_class, counts))
    return metrics
