"""Pooled AP against its definition (large-vocab-devil ``scripts/evaluate_ap_pooled.py``,
``LVISPooledEval``): the per-class budget, lvis-api's per-image evaluation unchanged,
then one ranking per pool of categories."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bacl.errors import BaclError
from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.lvis_eval import IOU_THRESHOLDS
from bacl.evaluation.pooled_ap import evaluate_pooled_ap
from tests.evaluation.test_accumulate import reference_precision
from tests.evaluation.test_fixed_ap import authors_budget, budget_has_ties, rescored
from tests.evaluation.test_lvis_eval import lvis_api, make_case  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
TOL = 1e-9


def reference_pooled_ap(lvis_api, gt: dict, dets: list[dict], k: int,  # noqa: F811
                        tmp_path: Path) -> dict[str, float]:
    """Pooled AP the slow way: the authors' budget, lvis-api's ``evaluate`` for the
    matching, then for each pool every detection of its categories in one list,
    ordered as the authors' accumulation orders it (per-image results listed image by
    image and, within an image, category by category; then a stable sort by score),
    and lvis-api's precision formula over that list."""
    gt_path = tmp_path / "pooled_gt.json"
    gt_path.write_text(json.dumps(gt))
    lvis_gt = lvis_api.LVIS(str(gt_path))
    results = lvis_api.LVISResults(lvis_gt, authors_budget(copy.deepcopy(dets), k), max_dets=-1)
    ev = lvis_api.LVISEval(lvis_gt, results, iou_type="bbox")
    ev.evaluate()
    params = ev.params
    num_imgs, num_areas = len(params.img_ids), len(params.area_rng)
    freqs = [c["frequency"] for c in lvis_gt.load_cats(params.cat_ids)]
    pools = {"all": list(range(len(freqs)))}
    pools.update({f: [c for c, x in enumerate(freqs) if x == f] for f in "rcf"})
    precision = {}
    for name, cats in pools.items():
        table = np.full((len(params.iou_thrs), len(params.rec_thrs), num_areas), -1.0)
        for a in range(num_areas):
            entries = [ev.eval_imgs[c * num_areas * num_imgs + a * num_imgs + i]
                       for i in range(num_imgs) for c in cats]
            entries = [e for e in entries if e is not None]
            num_gt = sum(int(np.count_nonzero(e["gt_ignore"] == 0)) for e in entries)
            if num_gt == 0:
                continue
            listed = [(e["dt_scores"][j], e["dt_matches"][:, j], e["dt_ignore"][:, j])
                      for e in entries for j in range(len(e["dt_ids"]))]
            listed = sorted(listed, key=lambda d: d[0], reverse=True)
            matches = np.array([d[1] for d in listed]).reshape(len(listed), -1)
            ignored = np.array([d[2] for d in listed]).reshape(len(listed), -1).astype(bool)
            tp, fp = (matches != 0) & ~ignored, (matches == 0) & ~ignored
            table[:, :, a] = reference_precision(tp, fp, num_gt)
        precision[name] = table

    def mean_valid(x: np.ndarray) -> float:
        return float(np.mean(x[x > -1])) if (x > -1).any() else -1.0

    out = {"AP": mean_valid(precision["all"][:, :, 0])}
    for key, thr in (("AP50", 0.5), ("AP75", 0.75)):
        out[key] = mean_valid(precision["all"][[list(IOU_THRESHOLDS).index(thr)], :, 0])
    for key, a in (("APs", 1), ("APm", 2), ("APl", 3)):
        out[key] = mean_valid(precision["all"][:, :, a])
    for f in "rcf":
        out[f"AP{f}"] = mean_valid(precision[f][:, :, 0])
    return out


def assert_close(ours: dict[str, Any], ref: dict[str, float]) -> None:
    for key in SUMMARY_KEYS:
        assert abs(ours[key] - ref[key]) <= TOL, (key, ours[key], ref[key])


CASES = [dict(seed=40, k=5), dict(seed=41, k=12), dict(seed=42, k=30, tangled=True),
         dict(seed=43, k=3, odd_gt=True), dict(seed=44, k=8, tangled=True, odd_gt=True, num_cats=9),
         dict(seed=45, k=1000, num_images=30)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_the_authors_definition(lvis_api, tmp_path: Path, case: dict[str, Any]) -> None:  # noqa: F811
    case = dict(case)
    k = case.pop("k")
    gt, dets = make_case(**case)
    if k < 100:
        assert budget_has_ties(dets, k)
    ours = evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=k)
    assert_close(ours, reference_pooled_ap(lvis_api, gt, dets, k, tmp_path))
    assert (ours["protocol"], ours["max_dets"], ours["max_dets_per_class"]) == ("pooled", None, k)
    assert ours["num_detections"] == len(authors_budget(dets, k))
    assert "per_class" not in ours
    json.dumps(ours)


def _case(*, neg_for_b: bool) -> tuple[dict, list[dict]]:
    """Class "a" has one box and a perfect detection at 0.5; class "b" has no box at all
    and one detection at 0.9 on the same image, where b is verified absent or not."""
    cats = [{"id": 1, "name": "a", "frequency": "f", "image_count": 500},
            {"id": 2, "name": "b", "frequency": "f", "image_count": 300}]
    images = [{"id": 1, "neg_category_ids": [2] if neg_for_b else [],
               "not_exhaustive_category_ids": []}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},
            {"image_id": 1, "category_id": 2, "bbox": [30, 30, 10, 10], "score": 0.9}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def test_a_class_without_boxes_costs_pooled_ap_only_where_verified_absent() -> None:
    gt, dets = _case(neg_for_b=True)
    pooled = evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=10)
    # Ranked [b (false positive), a (hit)]: precision 1/2 at every recall level.
    assert pooled["AP"] == pytest.approx(0.5) and pooled["APf"] == pytest.approx(0.5)
    assert pooled["APr"] == -1.0 and pooled["APc"] == -1.0  # pools without boxes
    # Per-class AP never sees b: no box, no AP.
    assert evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=10)["AP"] == \
        pytest.approx(1.0)
    gt, dets = _case(neg_for_b=False)  # b neither annotated nor verified absent: dropped
    assert evaluate_pooled_ap(annotations=gt, detections=dets,
                              max_dets_per_class=10)["AP"] == pytest.approx(1.0)


def test_ties_across_classes_rank_by_image_then_category() -> None:
    """Two equal scores: a miss of class 2 in image 1 and a hit of class 1 in image 2.
    Image 1 comes first whatever the input order, so the hit is ranked second."""
    cats = [{"id": 1, "name": "a", "frequency": "c", "image_count": 50},
            {"id": 2, "name": "b", "frequency": "c", "image_count": 50}]
    images = [{"id": i, "neg_category_ids": [], "not_exhaustive_category_ids": []} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 100},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]
    miss = {"image_id": 1, "category_id": 2, "bbox": [40, 40, 10, 10], "score": 0.7}
    hit = {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.7}
    gt = {"images": images, "annotations": anns, "categories": cats}
    for dets in ([miss, hit], [hit, miss]):
        out = evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=10)
        # Two boxes, one hit ranked second: precision 1/2 up to recall 1/2 (51 of 101 levels).
        assert out["AP"] == pytest.approx(0.5 * 51 / 101) and out["APc"] == out["AP"]


def test_per_class_monotone_rescoring_changes_pooled_but_not_fixed_ap() -> None:
    gt, dets = make_case(46)
    other = rescored(dets, gt)
    assert evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=6)["AP"] != \
        evaluate_pooled_ap(annotations=gt, detections=other, max_dets_per_class=6)["AP"]
    assert evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=6) == \
        evaluate_fixed_ap(annotations=gt, detections=other, max_dets_per_class=6)


def test_empty_detections_and_no_ground_truth() -> None:
    gt, dets = make_case(48)
    out = evaluate_pooled_ap(annotations=gt, detections=[], max_dets_per_class=5)
    assert all(out[k] == 0.0 for k in ("AP", "AP50", "AP75", "APr", "APc", "APf"))
    assert out["num_detections"] == 0
    gt["annotations"] = []
    out = evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=5)
    assert all(out[k] == -1.0 for k in SUMMARY_KEYS)


def test_bad_budget_names_the_setting() -> None:
    gt, dets = make_case(49)
    with pytest.raises(BaclError, match="max_dets_per_class"):
        evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=0)
