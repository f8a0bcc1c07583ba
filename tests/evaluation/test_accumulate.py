"""The vectorised precision accumulation against a transcription of lvis-api's loop."""

from __future__ import annotations

import numpy as np
import pytest

from bacl.evaluation.accumulate import area_precision

RECALLS = np.linspace(0.0, 1.0, 101)


def reference_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> np.ndarray:
    """LVISEval.accumulate for one category: ``tp``/``fp`` (n, T) -> (T, R)."""
    out = np.zeros((tp.shape[1], len(RECALLS)))
    tp_sum = np.cumsum(tp, axis=0).astype(float).T
    fp_sum = np.cumsum(fp, axis=0).astype(float).T
    for t, (tps, fps) in enumerate(zip(tp_sum, fp_sum)):
        rc = tps / num_gt
        pr = (tps / (fps + tps + np.spacing(1))).tolist()
        for i in range(len(tps) - 1, 0, -1):
            if pr[i] > pr[i - 1]:
                pr[i - 1] = pr[i]
        for r, idx in enumerate(np.searchsorted(rc, RECALLS, side="left")):
            if idx >= len(pr):
                break
            out[t, r] = pr[idx]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_area_precision_equals_lvis_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_cats, num_thr, n = 12, 10, 400
    category = np.sort(rng.integers(0, num_cats - 1, size=n))  # the last category: no dets
    unmatched_fp = rng.random(n) < 0.8  # the rest are ignored when unmatched
    is_cand = rng.random(n) < 0.4
    cand_pos = np.flatnonzero(is_cand)
    outcome = rng.integers(0, 3, size=(num_thr, len(cand_pos)))  # 0 TP, 1 FP, 2 ignored
    outcome[:, rng.random(len(cand_pos)) < 0.3] = 0  # some always true positives
    cand_tp, cand_fp = outcome == 0, outcome == 1
    cand_counts = np.bincount(category[cand_pos], minlength=num_cats)
    num_gt = cand_counts + rng.integers(0, 4, size=num_cats)  # enough boxes for every TP
    num_gt[3] = 0  # detections but no ground truth
    num_gt[-1] = 5  # ground truth but no detections

    got = area_precision(category=category, unmatched_fp=unmatched_fp, cand_pos=cand_pos,
                         cand_tp=cand_tp, cand_fp=cand_fp, num_gt=num_gt, recall_thresholds=RECALLS)
    tp = np.zeros((n, num_thr), bool)
    fp = np.repeat(unmatched_fp[:, None], num_thr, axis=1)
    tp[cand_pos], fp[cand_pos] = cand_tp.T, cand_fp.T
    for k in range(num_cats):
        if num_gt[k] == 0:
            assert (got[:, :, k] == -1).all()
            continue
        rows = category == k
        assert np.array_equal(got[:, :, k], reference_precision(tp[rows], fp[rows], num_gt[k])), k

