"""The vectorised matching against pycocotools' IoU and a plain-Python greedy loop."""

from __future__ import annotations

import numpy as np
import pytest

from bacl.evaluation.matching import box_iou_pairs, match_groups, ragged_arange

THRESHOLDS = np.minimum(np.linspace(0.5, 0.95, 10), 1 - 1e-10)


def test_ragged_arange() -> None:
    assert ragged_arange(np.array([2, 0, 3])).tolist() == [0, 1, 0, 1, 2]
    assert ragged_arange(np.array([], dtype=np.int64)).tolist() == []


def test_box_iou_is_bitwise_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask", reason="the reference IoU is pycocotools'")
    rng = np.random.default_rng(0)
    dt = np.round(rng.uniform(0, 50, size=(300, 4)), 1)
    gt = np.round(rng.uniform(0, 50, size=(40, 4)), 1)
    gt[:5] = dt[:5]  # identical boxes: IoU exactly 1
    gt[5] = [dt[5, 0] + dt[5, 2], dt[5, 1], 3.0, 3.0]  # touching edge: IoU 0
    expected = mask_utils.iou(dt.tolist(), gt.tolist(), [0] * len(gt))  # (300, 40)
    d, g = np.meshgrid(np.arange(len(dt)), np.arange(len(gt)), indexing="ij")
    ours = box_iou_pairs(dt[d.ravel()], gt[g.ravel()]).reshape(len(dt), len(gt))
    assert np.array_equal(ours, expected)


def greedy_reference(iou: np.ndarray, ignore: np.ndarray, thr: float) -> list[int]:
    """lvis-api's evaluate_img loop for one group / area / threshold, gt in file order.

    ``iou`` (D, G) with detections in score order, ``ignore`` (G,). Returns, per
    detection, the matched gt (file index) or -1.
    """
    order = np.argsort(ignore, kind="mergesort")  # not ignored first
    ig = ignore[order]
    taken = np.zeros(len(order), dtype=bool)
    out = []
    for d in range(iou.shape[0]):
        best, m = min(thr, 1 - 1e-10), -1
        for j in range(len(order)):
            if taken[j]:
                continue
            if m > -1 and not ig[m] and ig[j]:
                break
            if iou[d, order[j]] < best:
                continue
            best, m = iou[d, order[j]], j
        if m > -1:
            taken[m] = True
        out.append(int(order[m]) if m > -1 else -1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_groups_equals_greedy_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt_group, dt_boxes, gt_group, gt_boxes = [], [], [], []
    for g in range(40):
        n_gt = int(rng.integers(0, 7))
        base = rng.uniform(0, 100, size=(n_gt, 4)) + [0, 0, 20, 20]
        # Overlapping boxes of one group (so detections reach several) and duplicates.
        if n_gt >= 2 and rng.random() < 0.5:
            base[1] = base[0] + [2, 0, 0, 0]
        if n_gt >= 3 and rng.random() < 0.5:
            base[2] = base[0]
        gt_boxes += base.round(1).tolist()
        gt_group += [g] * n_gt
        n_dt = int(rng.integers(0, 12))
        for _ in range(n_dt):
            if n_gt and rng.random() < 0.8:
                x, y, w, h = base[int(rng.integers(n_gt))]
                box = [x + rng.normal(0, 2), y + rng.normal(0, 2), w * rng.uniform(0.8, 1.2), h]
            else:
                box = (rng.uniform(0, 100, size=4) + [0, 0, 5, 5]).tolist()
            dt_boxes.append(np.round(box, 1).tolist())
            dt_group.append(g)
    dt_group, gt_group = np.array(dt_group), np.array(gt_group)
    dt_boxes, gt_boxes = np.array(dt_boxes), np.array(gt_boxes)
    gt_ignore = rng.random((4, len(gt_group))) < np.array([[0.0], [0.3], [0.5], [0.9]])

    candidates, matched = match_groups(
        dt_group=dt_group, dt_boxes=dt_boxes, gt_group=gt_group, gt_boxes=gt_boxes,
        gt_ignore=gt_ignore, num_groups=40, thresholds=THRESHOLDS)
    full = np.full((len(dt_group), 4, len(THRESHOLDS)), -1)
    full[candidates] = matched
    for g in range(40):
        d_idx, g_idx = np.flatnonzero(dt_group == g), np.flatnonzero(gt_group == g)
        if len(d_idx) == 0 or len(g_idx) == 0:
            continue
        d, gg = np.meshgrid(d_idx, g_idx, indexing="ij")
        iou = box_iou_pairs(dt_boxes[d.ravel()], gt_boxes[gg.ravel()]).reshape(d.shape)
        for a in range(4):
            for t, thr in enumerate(THRESHOLDS):
                expected = greedy_reference(iou, gt_ignore[a, g_idx], thr)
                got = [int(np.searchsorted(g_idx, m)) if m >= 0 else -1
                       for m in full[d_idx, a, t]]
                assert got == expected, (g, a, t)
