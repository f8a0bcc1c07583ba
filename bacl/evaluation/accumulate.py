"""Precision at fixed recall levels per category, as ``LVISEval.accumulate`` computes it.

lvis-api walks each category's detections in score order, takes cumulative true and
false positives, makes precision monotone from the right and reads it at 101 recall
levels with ``searchsorted``. The same numbers follow from the true positives alone:

- recall only changes at a true positive, so ``searchsorted(recall, level)`` lands on
  the ``c``-th true positive, ``c`` the smallest count with ``c / num_gt >= level``
  (the same float division, so the same answer), or past the end (precision 0);
- between two true positives precision only falls (same ``tp``, growing ``fp``), so
  the right-to-left maximum at a true positive is the maximum over later true
  positives.

So precision is computed at the true positives only (at most ground-truth boxes x
thresholds of them, against detections x thresholds positions), for all categories
at once. The false positives before each one are counted without a per-threshold
pass over all detections: most detections never match, so their outcome is the
same at every threshold, and only the candidates that may match are corrected per
threshold. The right-to-left running maximum restarts at each (threshold, category)
run by running it on complex numbers ``-run + 1j * precision``: numpy orders
complex numbers by real part first, so a new run always wins, and the precision
stays exact.
"""

from __future__ import annotations

import numpy as np


def min_true_positives(num_gt: int, recall_thresholds: np.ndarray) -> np.ndarray:
    """``(R,)`` smallest ``tp`` in ``[0, num_gt]`` with recall ``tp / num_gt`` >= each level."""
    recall_values = np.arange(num_gt + 1, dtype=np.float64) / num_gt
    return np.searchsorted(recall_values, recall_thresholds, side="left")


def _run_suffix_max(values: np.ndarray, run: np.ndarray) -> np.ndarray:
    """``max(values[i:end of i's run])`` for ``values`` (E,) and non-decreasing ``run`` (E,)."""
    keyed = np.empty(len(values), dtype=np.complex128)
    keyed.real = -run
    keyed.imag = values
    return np.maximum.accumulate(keyed[::-1])[::-1].imag


def area_precision(*, category: np.ndarray, unmatched_fp: np.ndarray, cand_pos: np.ndarray,
                   cand_tp: np.ndarray, cand_fp: np.ndarray, num_gt: np.ndarray,
                   recall_thresholds: np.ndarray) -> np.ndarray:
    """Interpolated precision of every category for one area range.

    Detections come in lvis-api's accumulation order (category, score descending,
    image id, input order). Most never match anything, and their outcome does not
    depend on the IoU threshold; only the candidates' outcomes are given per threshold.

    Args:
        category: ``(N,)`` category index per detection, non-decreasing.
        unmatched_fp: ``(N,)`` bool, the detection is a false positive if unmatched
            (False when lvis-api ignores it unmatched: area out of range, or a
            not-exhaustively labelled category).
        cand_pos: ``(C,)`` increasing positions of the candidates (may match).
        cand_tp, cand_fp: ``(T, C)`` bool, the candidates' true / false positives.
        num_gt: ``(K,)`` int, boxes that are not ignored per category.
        recall_thresholds: ``(R,)`` increasing.

    Returns:
        ``(T, R, K)`` float64; -1 for categories without ground truth.
    """
    num_cats, num_thr = len(num_gt), cand_tp.shape[0]
    out = np.full((num_thr, len(recall_thresholds), num_cats), -1.0)
    cats = np.flatnonzero(num_gt > 0)
    if len(cats) == 0:
        return out
    out[:, :, cats] = 0.0
    # True positives as events, sorted by (threshold, candidate), so by (threshold,
    # category, position): a "run" is one (threshold, category) column.
    thr, q = np.nonzero(cand_tp)
    if len(q) == 0:
        return out
    cand_cat = category[cand_pos]
    event_cat = cand_cat[q]
    run = thr * num_cats + event_cat
    run_len = np.bincount(run, minlength=num_thr * num_cats)
    run_start = np.cumsum(run_len) - run_len
    tp_count = np.arange(1, len(run) + 1) - run_start[run]

    # False positives up to each event within its category: those there would be if
    # nothing matched, less the candidates that are not false positives after all.
    seg = np.arange(num_cats)
    fp_if_unmatched = np.concatenate([[0], np.cumsum(unmatched_fp, dtype=np.int64)])
    correction = unmatched_fp[cand_pos].astype(np.int32) - cand_fp  # (T, C)
    correction = np.hstack([np.zeros((num_thr, 1), np.int32), np.cumsum(correction, axis=1)])
    cand_seg_start = np.searchsorted(cand_cat, seg)
    fp_count = (fp_if_unmatched[cand_pos[q] + 1]
                - fp_if_unmatched[np.searchsorted(category, seg)][event_cat]
                - correction[thr, q + 1] + correction[thr, cand_seg_start[event_cat]])
    tp_sum, fp_sum = tp_count.astype(np.float64), fp_count.astype(np.float64)
    # Same expression and float operations as lvis-api.
    best = _run_suffix_max(tp_sum / (fp_sum + tp_sum + np.spacing(1)), run)

    needed = np.empty((len(cats), len(recall_thresholds)), dtype=np.int64)
    for n in np.unique(num_gt[cats]).tolist():
        needed[num_gt[cats] == n] = min_true_positives(n, recall_thresholds)
    cols = np.arange(num_thr)[:, None] * num_cats + cats[None, :]  # (T, K')
    have = run_len[cols][:, :, None]  # (T, K', 1) true positives in the column
    # Level 0 (c = 0) reads position 0, whose right-to-left maximum is the first event's.
    event = run_start[cols][:, :, None] + np.maximum(needed[None], 1) - 1  # (T, K', R)
    reached = (needed[None] <= have) & (have > 0)
    value = best[np.minimum(event, len(best) - 1)]
    out[:, :, cats] = np.where(reached, value, 0.0).transpose(0, 2, 1)
    return out


def precision_table(*, category: np.ndarray, unmatched_fp: np.ndarray, cand_pos: np.ndarray,
                    cand_tp: np.ndarray, cand_fp: np.ndarray, num_gt: np.ndarray,
                    recall_thresholds: np.ndarray) -> np.ndarray:
    """Interpolated precision of every category and area range.

    Args are those of :func:`area_precision` with an area axis: ``unmatched_fp``
    ``(N, A)``, ``cand_tp`` / ``cand_fp`` ``(A, T, C)``, ``num_gt`` ``(K, A)``.

    Returns:
        ``(T, R, K, A)`` float64, lvis-api's ``eval["precision"]`` layout; -1 where a
        category has no ground truth in that area range.
    """
    return np.stack([area_precision(category=category, unmatched_fp=unmatched_fp[:, a],
                                    cand_pos=cand_pos, cand_tp=cand_tp[a], cand_fp=cand_fp[a],
                                    num_gt=num_gt[:, a], recall_thresholds=recall_thresholds)
                     for a in range(num_gt.shape[1])], axis=-1)
