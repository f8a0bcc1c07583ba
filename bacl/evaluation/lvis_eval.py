"""LVIS box AP, equal to lvis-api 0.5.3's ``LVISEval(iou_type="bbox")`` and much faster.

``evaluate_lvis`` reproduces every rule of the official evaluator (docs/method.md section
5): the per-image cut to the ``max_dets`` best-scored detections (``LVISResults``),
the federated filter (per image, only categories with ground truth or in
``neg_category_ids`` are evaluated; unmatched detections of
``not_exhaustive_category_ids`` are not false positives), the greedy matching with
its ignore rules and tie-breaking, the precision interpolation at 101 recall levels,
and the r/c/f grouping by the categories' ``frequency``. It agrees with lvis-api on
every summary number and every per-class AP (tests check this on random cases).

Where lvis-api would crash or silently misbehave we raise instead: detections on
unknown image or category ids, non-finite boxes or scores, duplicate ids in the
ground truth. An empty detection list (lvis-api raises ``IndexError``) is evaluated
as "nothing detected": every category with ground truth gets AP 0.

The work is split in two steps that other protocols reuse: :func:`match_detections`
(what lvis-api's ``evaluate`` decides per detection) and :func:`accumulate_precision`
(its ``accumulate``, over any grouping of the detections: per category here, per
pool of categories for pooled AP, ``bacl/evaluation/pooled_ap.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bacl.atomic_io import atomic_write_json
from bacl.errors import BaclError
from bacl.evaluation.accumulate import precision_table
from bacl.evaluation.lvis_io import (Detections, GroundTruth, PathLike, index_in, load_detections,
                                     load_ground_truth)
from bacl.evaluation.matching import match_groups

# lvis-api's Params, built the same way so the floats are the same.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_NAMES = ("all", "small", "medium", "large")
AREA_RANGES = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                        [96 ** 2, 1e5 ** 2]], dtype=np.float64)
# lvis-api caps the threshold just below 1 so that IoU == 1 is never required.
MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
DEFAULT_MAX_DETS = 300  # the LVIS protocol: 300 detections per image


class EvaluationError(BaclError, ValueError):
    """Bad evaluation input or setting; the message names the argument, detection or id."""


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` if it is a positive integer (not a bool), else :class:`EvaluationError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise EvaluationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def evaluate_lvis(*, annotations: PathLike | Mapping[str, Any],
                  detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
                  max_dets: int = DEFAULT_MAX_DETS) -> dict[str, Any]:
    """LVIS box AP of ``detections`` against ``annotations``.

    Args:
        annotations: path to an LVIS annotation json, or the loaded dict (JSON types).
        detections: path to an LVIS results json (a list of ``{image_id, category_id,
            bbox: [x, y, w, h], score}``), such a list in memory, or a dict of arrays
            ``{"image_id": (N,), "category_id": (N,), "bbox": (N, 4), "score": (N,)}``
            (input order breaks ties in score, as list order does).
        max_dets: detections kept per image, the best-scored ones (LVIS: 300).

    Returns:
        A JSON-serialisable dict: ``AP, AP50, AP75, APs, APm, APl, APr, APc, APf``
        (floats; -1.0 where no category qualifies, as lvis-api), ``per_class``: a list
        over categories sorted by id of ``{category_id, name, frequency, image_count,
        AP}`` with ``AP`` None for categories without ground truth in the evaluated
        images, ``num_images`` (ground-truth images), ``num_detections`` (kept after
        the per-image cut), and the evaluation settings: ``protocol`` ("lvis"),
        ``max_dets`` and ``max_dets_per_class`` (None: no per-class budget).
    """
    max_dets = check_positive_int("max_dets", max_dets)
    gt = load_ground_truth(annotations)
    dets = load_detections(detections)
    precision, num_kept = lvis_precision(gt, dets, max_dets=max_dets)
    return {**per_class_metrics(gt, precision, num_detections=num_kept),
            "protocol": "lvis", "max_dets": max_dets, "max_dets_per_class": None}


def lvis_precision(gt: GroundTruth, dets: Detections, *,
                   max_dets: int | None) -> tuple[np.ndarray, int]:
    """lvis-api's ``eval["precision"]`` ``(T, R, K, A)`` and the number of detections kept
    by the per-image cut (``max_dets`` None: no cut)."""
    matched = match_detections(gt, dets, max_dets=max_dets)
    return accumulate_precision(matched, matched.category, matched.num_gt), matched.num_kept


@dataclass(frozen=True)
class MatchedDetections:
    """What lvis-api's ``evaluate`` decides about the detections it evaluates.

    ``N`` evaluated detections in the order lvis-api visits them: (image, category)
    group, score descending, input order. ``C`` of them are candidates (may match a
    box), ``A`` area ranges, ``T`` IoU thresholds, ``K`` categories. The others never
    match: each is a false positive, or ignored, per area range (``unmatched_fp``).
    """

    category: np.ndarray  # (N,) int64 category index
    tied_rank: np.ndarray  # (N,) int64 rank of the score, highest first; equal scores share it
    unmatched_fp: np.ndarray  # (N, A) bool: a false positive when unmatched (else ignored)
    candidates: np.ndarray  # (C,) int64 positions (in the N) of the candidates
    cand_tp: np.ndarray  # (C, A, T) bool true positive
    cand_fp: np.ndarray  # (C, A, T) bool false positive
    num_gt: np.ndarray  # (K, A) int64 boxes that are not ignored, per category
    num_kept: int  # detections left by the per-image cut (before lvis-api's filters)


def match_detections(gt: GroundTruth, dets: Detections, *,
                     max_dets: int | None) -> MatchedDetections:
    """lvis-api's per-image evaluation of ``dets`` (cut to ``max_dets`` per image
    unless None) against ``gt``: matching, ignore rules and federated filter."""
    num_cats = len(gt.category_ids)
    gt_keep, gt_key = _evaluated_ground_truth(gt)
    kept, dt_key, num_kept = _evaluated_detections(gt, dets, max_dets, gt_key)
    area = dets.boxes[kept, 2] * dets.boxes[kept, 3]
    rank, tied_rank = _score_ranks(dets.scores[kept])
    # Detections as lvis-api's evaluate_img visits them: (image, category) group,
    # score descending, input order. Ground truth: group, then file order.
    dt_order = _order_by(dt_key, rank)
    kept, dt_key, area, tied_rank = (x[dt_order] for x in (kept, dt_key, area, tied_rank))
    gt_order = np.argsort(gt_key, kind="stable")
    gt_keep, gt_key = gt_keep[gt_order], gt_key[gt_order]

    groups = np.union1d(_sorted_unique(dt_key), _sorted_unique(gt_key))
    gt_ignore = gt.ann_ignore[gt_keep][None, :] | _outside(gt.ann_areas[gt_keep], AREA_RANGES)
    candidates, matched = match_groups(
        dt_group=np.searchsorted(groups, dt_key), dt_boxes=dets.boxes[kept],
        gt_group=np.searchsorted(groups, gt_key), gt_boxes=gt.ann_boxes[gt_keep],
        gt_ignore=gt_ignore, num_groups=len(groups), thresholds=MATCH_THRESHOLDS)

    # lvis-api ignores an unmatched detection outside the area range, or of a category
    # not exhaustively labelled in its image; otherwise it is a false positive.
    not_exhaustive = np.isin(dt_key, gt.not_exhaustive_pairs)
    unmatched_fp = ~(_outside(area, AREA_RANGES).T | not_exhaustive[:, None])  # (N, A)
    cand_tp, cand_fp = _candidate_outcomes(matched, gt_ignore=gt_ignore,
                                           gt_id_nonzero=gt.ann_ids[gt_keep] != 0,
                                           unmatched_fp=unmatched_fp[candidates])
    num_gt = np.stack([np.bincount(gt_key % num_cats, weights=~ig, minlength=num_cats)
                       for ig in gt_ignore], axis=1).astype(np.int64)
    return MatchedDetections(category=dt_key % num_cats, tied_rank=tied_rank,
                             unmatched_fp=unmatched_fp, candidates=candidates, cand_tp=cand_tp,
                             cand_fp=cand_fp, num_gt=num_gt, num_kept=num_kept)


def accumulate_precision(matched: MatchedDetections, group: np.ndarray,
                         num_gt: np.ndarray) -> np.ndarray:
    """lvis-api's ``accumulate`` with the detections pooled by ``group``.

    Args:
        matched: the evaluated detections (``N`` of them).
        group: ``(N,)`` int64 in ``[0, G)``, the group each detection is ranked in:
            its category for per-category AP (lvis-api), a pool of categories for
            pooled AP.
        num_gt: ``(G, A)`` int64, boxes that are not ignored per group and area range.

    Returns:
        ``(T, R, G, A)`` precision at the recall levels; -1 where a group has no box.

    Within a group, detections are ranked by score (descending), then image, then
    category, then input order: the order a stable sort by score leaves lvis-api's
    per-image results in, listed image by image and category by category.
    """
    # The N detections are already ordered by (image, category), then score and input
    # order, so their position breaks ties in score exactly that way.
    acc_order = _order_by(group, matched.tied_rank, np.arange(len(group)))
    acc_pos = np.empty_like(acc_order)
    acc_pos[acc_order] = np.arange(len(acc_order))
    cand_order = np.argsort(acc_pos[matched.candidates])
    # (A, T, C) so that per-threshold scans over candidates run on contiguous memory.
    cand_tp = np.ascontiguousarray(matched.cand_tp[cand_order].transpose(1, 2, 0))
    cand_fp = np.ascontiguousarray(matched.cand_fp[cand_order].transpose(1, 2, 0))
    return precision_table(
        category=group[acc_order], unmatched_fp=matched.unmatched_fp[acc_order],
        cand_pos=acc_pos[matched.candidates][cand_order], cand_tp=cand_tp, cand_fp=cand_fp,
        num_gt=num_gt, recall_thresholds=RECALL_THRESHOLDS)


def _evaluated_detections(gt: GroundTruth, dets: Detections, max_dets: int | None,
                          gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The detections lvis-api evaluates.

    ``LVISResults`` keeps the ``max_dets`` best per image (all if None); then lvis-api drops
    zero-area (and infinite) boxes when it looks detections up, and keeps a detection
    only if its category has ground truth in the image (``gt_key``, the evaluated
    boxes' keys) or is verified absent there.

    Returns their indices ``(N,)`` (ascending), their ``image_index * K +
    category_index`` keys ``(N,)``, and how many detections the cut kept.
    """
    img_idx, cat_idx = locate_detections(gt, dets)
    kept = (np.arange(len(dets.scores)) if max_dets is None
            else top_scored_per_group(img_idx, dets.scores, max_dets))
    area = dets.boxes[kept, 2] * dets.boxes[kept, 3]
    key = img_idx[kept] * len(gt.category_ids) + cat_idx[kept]
    sel = (area > 0) & (area < np.inf) & (np.isin(key, gt_key) | np.isin(key, gt.neg_pairs))
    return kept[sel], key[sel], len(kept)


def _score_ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks ``(N,)`` of each score, highest first: ties broken by input order (as a
    stable sort does), and ties sharing a rank."""
    order = np.argsort(-scores, kind="stable")
    rank, tied_rank = np.empty(len(scores), np.int64), np.empty(len(scores), np.int64)
    rank[order] = np.arange(len(scores))
    ordered = scores[order]
    tied_rank[order] = np.concatenate([[0], np.cumsum(ordered[1:] != ordered[:-1])])
    return rank, tied_rank


def _order_by(*keys: np.ndarray) -> np.ndarray:
    """Permutation sorting by ``keys`` (each (N,) non-negative int, first key first).

    The last key must make rows unique. The keys are packed into one int64 so that a
    single (unstable, fast) sort does it; ``np.lexsort`` if they do not fit.
    """
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        span = int(key.max()) + 1 if len(key) else 1
        if packed.size and int(packed.max()) >= np.iinfo(np.int64).max // span:
            return np.lexsort(keys[::-1])
        packed = packed * span + key
    return np.argsort(packed)


def _sorted_unique(sorted_values: np.ndarray) -> np.ndarray:
    """``np.unique`` of an already sorted ``(n,)`` array, without sorting it again."""
    first = np.ones(len(sorted_values), dtype=bool)
    first[1:] = sorted_values[1:] != sorted_values[:-1]
    return sorted_values[first]


def locate_detections(gt: GroundTruth, dets: Detections) -> tuple[np.ndarray, np.ndarray]:
    """Image and category index ``(N,)`` of each detection; an unknown id raises
    :class:`EvaluationError` naming the detection and the id."""
    out = []
    for what, ids, known in (("image", dets.image_ids, gt.image_ids),
                             ("category", dets.category_ids, gt.category_ids)):
        idx = index_in(known, ids)
        if (idx < 0).any():
            i = int(np.flatnonzero(idx < 0)[0])
            raise EvaluationError(f"detection {i} has {what}_id {int(ids[i])}, which is not in "
                                  f"the ground truth's {what}s")
        out.append(idx)
    return out[0], out[1]


def top_scored_per_group(group: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the ``k`` best-scored detections of each group.

    ``group`` ``(N,)`` non-negative int (an image for ``LVISResults``' per-image cut,
    a category for a per-class budget), ``scores`` ``(N,)``. Ties in score are broken
    by input order, as Python's stable ``sorted(..., key=score, reverse=True)[:k]``
    does in lvis-api and in the Fixed AP scripts.
    """
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    over = np.bincount(group)[group] > k
    if not over.any():
        return np.arange(len(scores))
    # Only groups above the budget need sorting.
    crowded = np.flatnonzero(over)
    order = crowded[np.lexsort((-scores[crowded], group[crowded]))]
    counts = np.bincount(group[order])
    counts = counts[counts > 0]
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.sort(np.concatenate([np.flatnonzero(~over), order[rank < k]]))


def top_scored_per_image(img_idx: np.ndarray, scores: np.ndarray, max_dets: int) -> np.ndarray:
    """``LVISResults``' per-image cut: :func:`top_scored_per_group` over images."""
    return top_scored_per_group(img_idx, scores, max_dets)


def _evaluated_ground_truth(gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Annotations lvis-api evaluates: known image and category, 0 < area < inf.

    Returns their indices ``(M,)`` in file order and their ``image_index * K +
    category_index`` keys ``(M,)``.
    """
    img_idx = index_in(gt.image_ids, gt.ann_image_ids)
    cat_idx = index_in(gt.category_ids, gt.ann_category_ids)
    ok = (gt.ann_areas > 0) & (gt.ann_areas < np.inf) & (img_idx >= 0) & (cat_idx >= 0)
    keep = np.flatnonzero(ok)
    return keep, img_idx[keep] * len(gt.category_ids) + cat_idx[keep]


def _outside(area: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """``(A, n)`` bool: area ``(n,)`` outside each closed range ``(A, 2)``."""
    return (area[None, :] < ranges[:, :1]) | (area[None, :] > ranges[:, 1:])


def _candidate_outcomes(matched: np.ndarray, *, gt_ignore: np.ndarray, gt_id_nonzero: np.ndarray,
                        unmatched_fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True / false positive flags ``(C, A, T)`` of the candidates, lvis-api's rules.

    Args:
        matched: ``(C, A, T)`` matched box index or -1.
        gt_ignore: ``(A, M)`` bool, ignored boxes per area range.
        gt_id_nonzero: ``(M,)`` bool. lvis-api stores the matched box's *id* and reads
            id 0 as "unmatched"; this reproduces that corner case.
        unmatched_fp: ``(C, A)`` bool, false positive if unmatched (else ignored).

    A detection matched to an ignored box is ignored (neither true nor false positive).
    """
    is_match = matched >= 0
    box = np.where(is_match, matched, 0)
    hit = is_match & gt_id_nonzero[box]
    ignored = is_match & gt_ignore[np.arange(gt_ignore.shape[0])[None, :, None], box]
    ignored |= ~hit & ~unmatched_fp[:, :, None]
    return hit & ~ignored, ~hit & ~ignored


def mean_valid(values: np.ndarray) -> float:
    """lvis-api's summary: mean over entries > -1, or -1 if there are none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, frequency_index: np.ndarray) -> dict[str, float]:
    """The nine AP numbers of ``LVISEval.summarize`` from precision ``(T, R, K, A)``.

    ``frequency_index`` ``(K,)`` is 0/1/2 for rare/common/frequent.
    """
    all_area = AREA_NAMES.index("all")

    def at_iou(thr: float) -> np.ndarray:
        return precision[np.where(thr == IOU_THRESHOLDS)[0]][:, :, :, [all_area]]

    out = {"AP": mean_valid(precision[:, :, :, [all_area]]),
           "AP50": mean_valid(at_iou(0.50)),
           "AP75": mean_valid(at_iou(0.75))}
    for key, name in (("APs", "small"), ("APm", "medium"), ("APl", "large")):
        out[key] = mean_valid(precision[:, :, :, [AREA_NAMES.index(name)]])
    for key, group in (("APr", 0), ("APc", 1), ("APf", 2)):
        cats = np.flatnonzero(frequency_index == group)
        out[key] = mean_valid(precision[:, :, cats, all_area])
    return out


def per_class_metrics(gt: GroundTruth, precision: np.ndarray, *,
                      num_detections: int) -> dict[str, Any]:
    """The summary of per-category precision ``(T, R, K, A)``, ``per_class`` AP (None
    where a category has no box), ``num_images`` and ``num_detections``."""
    metrics: dict[str, Any] = summarize(precision, gt.frequency_index)
    per_class = []
    for k, cat in enumerate(gt.categories):
        ap = mean_valid(precision[:, :, k, AREA_NAMES.index("all")])
        per_class.append({**cat, "AP": None if ap == -1.0 else ap})
    metrics.update(per_class=per_class, num_images=len(gt.image_ids),
                   num_detections=int(num_detections))
    return metrics


def write_metrics(path: PathLike, metrics: Mapping[str, Any]) -> None:
    """Write ``metrics`` as JSON atomically: an existing file is never left half-written
    (serialised first, so a value JSON cannot hold fails before the disk is touched)."""
    atomic_write_json(path, metrics, indent=2)
