"""Greedy detection-to-ground-truth matching of lvis-api, vectorised over images.

lvis-api (``LVISEval.evaluate_img``) matches, for every (image, category, area
range, IoU threshold), each detection in decreasing score order to the unmatched
ground-truth box with the highest IoU >= threshold, preferring boxes that are not
ignored (ties: the last box in ground-truth order wins). This module reproduces that
rule exactly for all (image, category) groups at once:

- a *candidate* is a detection whose best IoU in its group reaches the lowest
  threshold; the others never match anything;
- when no candidate of a group can reach two boxes, each box simply goes to its
  first candidate with IoU >= threshold (closed form, all groups in one pass);
- the other ("tangled") groups run the greedy loop in steps: step ``k`` matches the
  ``k``-th candidate of every such group simultaneously.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` for ``counts`` (G,) -> (sum(counts),)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def box_iou_pairs(dt_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of row-aligned xywh boxes ``(P, 4)`` and ``(P, 4)`` -> ``(P,)``.

    The operations and their order are those of pycocotools' ``bbIou`` (which
    lvis-api calls), so results agree to the last bit and threshold decisions too.
    """
    dx, dy, dw, dh = dt_boxes.T
    gx, gy, gw, gh = gt_boxes.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = dw * dh + gw * gh - inter
    overlap = (w > 0) & (h > 0)
    iou = np.zeros(len(dt_boxes), dtype=np.float64)
    np.divide(inter, union, out=iou, where=overlap)
    return iou


def _group_ranges(group: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and count (each (num_groups,)) of every group in a group-sorted array."""
    count = np.bincount(group, minlength=num_groups).astype(np.int64)
    return np.cumsum(count) - count, count


def greedy_steps(iou_rows: np.ndarray, step_sizes: np.ndarray, ignore: np.ndarray,
                 thresholds: np.ndarray) -> np.ndarray:
    """Run the greedy matching for ``S`` instances that share a padded width ``W``.

    Args:
        iou_rows: ``(C, W)`` IoU of each candidate with the instance's ground truth,
            padded with -1. Rows are ordered by (step, instance): step ``k`` holds the
            ``k``-th candidate of instances ``0 .. step_sizes[k] - 1``, which requires
            instances sorted by decreasing candidate count.
        step_sizes: ``(K,)`` non-increasing, summing to ``C``.
        ignore: ``(S, W)`` bool, the ignore flag of each ground-truth box.
        thresholds: ``(T,)`` IoU thresholds (already capped below 1 as lvis-api does).

    Returns:
        ``(C, T)`` int64, the matched column per candidate and threshold, or -1.
    """
    num_thr, width = len(thresholds), iou_rows.shape[1]
    free = np.ones((len(ignore), num_thr, width), dtype=bool)
    out = np.empty((len(iou_rows), num_thr), dtype=np.int64)
    # Columns reversed once, so that argmax (first maximum) picks the *last* of equal
    # IoUs in ground-truth order, as lvis-api's loop does.
    iou_rev = iou_rows[:, ::-1]
    ignore_rev = ignore[:, ::-1]
    thr = thresholds[None, :, None]
    any_ignored = bool(ignore.any())
    row = 0
    for n in step_sizes.tolist():
        iou = iou_rev[row:row + n, None, :]  # (n, 1, W)
        value = np.where((iou >= thr) & free[:n], iou, -1.0)  # (n, T, W)
        if any_ignored:
            # A box that is not ignored beats any ignored box, whatever their IoUs.
            regular = np.where(ignore_rev[:n, None, :], -1.0, value)
            has_regular = regular.max(axis=2, keepdims=True) >= 0
            value = np.where(has_regular, regular, value)
        col = np.argmax(value, axis=2)  # (n, T), in reversed columns
        inst, t = np.nonzero(np.take_along_axis(value, col[:, :, None], axis=2)[:, :, 0] >= 0)
        free[inst, t, col[inst, t]] = False
        result = np.full((n, num_thr), -1, dtype=np.int64)
        result[inst, t] = width - 1 - col[inst, t]
        out[row:row + n] = result
        row += n
    return out


def match_groups(*, dt_group: np.ndarray, dt_boxes: np.ndarray, gt_group: np.ndarray,
                 gt_boxes: np.ndarray, gt_ignore: np.ndarray, num_groups: int,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match detections to ground truth within each group, for every area range.

    Args:
        dt_group: ``(N,)`` group of each detection; detections sorted by group, then
            by the order lvis-api visits them (score descending, ties in input order).
        dt_boxes: ``(N, 4)`` xywh.
        gt_group: ``(M,)`` group of each ground-truth box, sorted by group, then in
            annotation-file order.
        gt_boxes: ``(M, 4)`` xywh.
        gt_ignore: ``(A, M)`` bool, per area range: is the box ignored.
        num_groups: number of groups (``G``); group ids are in ``[0, G)``.
        thresholds: ``(T,)`` IoU thresholds, capped below 1 as lvis-api does.

    Returns:
        ``candidates`` (C,) int64 indices of the detections that may match, and
        ``matched`` (C, A, T) int32 index into the ground truth, -1 if unmatched.
        Detections not in ``candidates`` are unmatched everywhere.
    """
    num_areas, num_thr = gt_ignore.shape[0], len(thresholds)
    gt_start, gt_count = _group_ranges(gt_group, num_groups)

    # Every (detection, box) pair of a group; a detection's pairs are contiguous.
    dt_with_gt = np.flatnonzero(gt_count[dt_group] > 0)
    n_pairs = gt_count[dt_group[dt_with_gt]]
    pair_dt = np.repeat(dt_with_gt, n_pairs)
    pair_gt = np.repeat(gt_start[dt_group[dt_with_gt]], n_pairs) + ragged_arange(n_pairs)
    iou = box_iou_pairs(dt_boxes[pair_dt], gt_boxes[pair_gt])
    pair_start = np.cumsum(n_pairs) - n_pairs
    if len(iou) == 0:
        return np.zeros(0, np.int64), np.zeros((0, num_areas, num_thr), np.int32)
    # A pair can match only if its IoU reaches the lowest threshold.
    usable = iou >= thresholds.min()
    n_usable = np.add.reduceat(usable.astype(np.int64), pair_start)
    is_cand = n_usable > 0
    candidates = dt_with_gt[is_cand]
    matched = np.full((len(candidates), num_areas, num_thr), -1, dtype=np.int32)
    if len(candidates) == 0:
        return candidates, matched
    cand_group = dt_group[candidates]

    # Groups where no detection can match two boxes split into independent one-box
    # problems with a closed-form answer; the others run the step-by-step greedy.
    tangled = np.zeros(num_groups, dtype=bool)
    tangled[dt_group[dt_with_gt[n_usable > 1]]] = True
    simple = np.flatnonzero(~tangled[cand_group])
    only_pair = np.flatnonzero(usable)[np.cumsum(n_usable)[is_cand][simple] - 1]
    matched[simple] = _match_single_box(pair_gt[only_pair], iou[only_pair], thresholds)[:, None, :]

    hard = np.flatnonzero(tangled[cand_group])
    if len(hard) == 0:
        return candidates, matched
    cand_start, cand_count = _group_ranges(cand_group[hard], num_groups)
    problems = _problems(np.flatnonzero(cand_count), gt_group, gt_ignore)
    # Bucket the problems by padded width (a power of two) to bound the padding.
    width = 2 ** np.ceil(np.log2(gt_count[problems.group])).astype(np.int64)
    results = []
    for w in np.unique(width).tolist():
        sel = np.flatnonzero(width == w)
        results.append(_solve_bucket(
            w, problems.group[sel], problems.area[sel], problems.ignore, iou=iou,
            cand_pair_start=pair_start[is_cand][hard], cand_start=cand_start,
            cand_count=cand_count, gt_start=gt_start, gt_count=gt_count, thresholds=thresholds))
    # Area range 0 first, copied to every range; the ranges solved apart overwrite it.
    for cand, area, glob in results:
        first = area == 0
        matched[hard[cand[first]]] = glob[first][:, None, :]
    for cand, area, glob in results:
        later = area > 0
        matched[hard[cand[later]], area[later]] = glob[later]
    return candidates, matched


def _match_single_box(box: np.ndarray, iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy matching when every detection can reach only one box.

    Args:
        box: ``(C,)`` the one box each candidate can match (global index), candidates
            in matching order.
        iou: ``(C,)`` their IoU.
        thresholds: ``(T,)`` increasing.

    Returns:
        ``(C, T)`` the matched box or -1. At threshold ``t`` a box goes to the first
        of its candidates with IoU >= ``t``, whatever the ignore flags (there is no
        other box to prefer), so the answer is the same for every area range.
    """
    num_thr = len(thresholds)
    order = np.argsort(box, kind="stable")
    box_sorted = box[order]
    # Thresholds passed: the candidate matches at t < passed, unless an earlier
    # candidate of the same box passed t already (running maximum within the box).
    passed = np.searchsorted(thresholds, iou[order], side="right")
    new_box = np.ones(len(box), dtype=bool)
    new_box[1:] = box_sorted[1:] != box_sorted[:-1]
    rank = np.cumsum(new_box) * (num_thr + 1)  # keeps the running max inside each box
    running = np.maximum.accumulate(rank + passed) - rank
    before = np.where(new_box, 0, np.concatenate([[0], running[:-1]]))
    t = np.arange(num_thr)
    wins = (t >= before[:, None]) & (t < passed[:, None])
    out = np.empty((len(box), num_thr), dtype=np.int64)
    out[order] = np.where(wins, box_sorted[:, None], -1)
    return out


class _Problems(NamedTuple):
    group: np.ndarray  # (P,) group of each problem
    area: np.ndarray  # (P,) area range of each problem
    ignore: np.ndarray  # (A, M) bool, normalised ignore flags per area range


def _problems(groups: np.ndarray, gt_group: np.ndarray, gt_ignore: np.ndarray) -> _Problems:
    """The (group, area range) matching problems that must be solved.

    The match depends on the area range only through the boxes' ignore flags, and
    a group whose boxes are all ignored matches exactly as if none were. So range 0 is
    solved for every group in ``groups`` and a later range only for groups whose
    (normalised) ignore pattern differs from range 0's; the others copy range 0.
    """
    num_groups = int(gt_group.max()) + 1 if len(gt_group) else 0
    normalised = np.empty_like(gt_ignore)
    for a, ig in enumerate(gt_ignore):
        all_ignored = np.bincount(gt_group, weights=~ig, minlength=num_groups) == 0
        normalised[a] = ig & ~all_ignored[gt_group]
    group_list, area_list = [groups], [np.zeros(len(groups), np.int64)]
    for a in range(1, len(gt_ignore)):
        differs = np.bincount(gt_group, weights=normalised[a] != normalised[0],
                              minlength=num_groups) > 0
        g = groups[differs[groups]]
        group_list.append(g)
        area_list.append(np.full(len(g), a, np.int64))
    return _Problems(np.concatenate(group_list), np.concatenate(area_list), normalised)


def _solve_bucket(width: int, groups: np.ndarray, areas: np.ndarray, ignore_all: np.ndarray, *,
                  iou: np.ndarray, cand_pair_start: np.ndarray, cand_start: np.ndarray,
                  cand_count: np.ndarray, gt_start: np.ndarray, gt_count: np.ndarray,
                  thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve problems ``(groups, areas)`` (each (S,)) whose boxes fit in ``width``.

    Returns, per candidate row of these problems: the candidate index (C,), the area
    range (C,) and the matched ground-truth index per threshold (C, T), or -1.
    """
    counts = cand_count[groups]
    order = np.argsort(-counts, kind="stable")
    groups, areas, counts = groups[order], areas[order], counts[order]
    # step_sizes[k]: problems with more than k candidates (a prefix, counts descending).
    step_sizes = np.bincount(counts)[::-1].cumsum()[::-1][1:]
    step_offset = np.cumsum(step_sizes) - step_sizes

    # The k-th candidate of problem p sits in row step_offset[k] + p.
    prob = np.repeat(np.arange(len(groups)), counts)
    k = ragged_arange(counts)
    row = step_offset[k] + prob
    cand = cand_start[groups[prob]] + k
    col = np.arange(width)
    n_gt = gt_count[groups]
    valid = col[None, :] < n_gt[prob][:, None]  # (C, W)
    iou_rows = np.empty((len(row), width))
    iou_rows[row] = np.where(valid, iou[np.where(valid, cand_pair_start[cand][:, None] + col, 0)],
                             -1.0)
    box = gt_start[groups][:, None] + col[None, :]  # (S, W)
    box_valid = col[None, :] < n_gt[:, None]
    ignore = box_valid & ignore_all[areas[:, None], np.where(box_valid, box, 0)]

    local = greedy_steps(iou_rows, step_sizes, ignore, thresholds)[row]  # (C, T)
    glob = np.where(local >= 0, gt_start[groups[prob]][:, None] + local, -1)
    return cand, areas[prob], glob
