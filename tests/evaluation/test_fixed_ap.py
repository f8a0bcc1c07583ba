"""Fixed AP against its definition: the authors' per-class budget, then lvis-api with no
per-image cap (large-vocab-devil ``scripts/evaluate_ap_fixed.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bacl.errors import BaclError
from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.lvis_eval import evaluate_lvis
from tests.evaluation.test_lvis_eval import (assert_same_as_reference, lvis_api,  # noqa: F401
                                             make_case, reference_metrics)

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def authors_budget(dets: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The scripts' per-class budget, written out: group by category in order of first
    appearance, sort each group by score with Python's stable sort, keep the first k."""
    by_cat: dict[int, list[dict[str, Any]]] = {}
    for det in dets:
        by_cat.setdefault(det["category_id"], []).append(det)
    kept = []
    for cat_dets in by_cat.values():
        kept.extend(sorted(cat_dets, key=lambda d: d["score"], reverse=True)[:k])
    return kept


def reference_fixed_ap(lvis_api, gt: dict, dets: list[dict], k: int, tmp_path: Path) -> dict:  # noqa: F811
    """Fixed AP as the authors compute it: their budget, then lvis-api with max_dets=-1."""
    return reference_metrics(lvis_api, gt, authors_budget(copy.deepcopy(dets), k), tmp_path, -1)


def budget_has_ties(dets: list[dict[str, Any]], k: int) -> bool:
    """Some category has more than k detections and a tie across its k-th place."""
    by_cat: dict[int, list[float]] = {}
    for det in dets:
        by_cat.setdefault(det["category_id"], []).append(det["score"])
    for scores in by_cat.values():
        ranked = sorted(scores, reverse=True)
        if len(ranked) > k and ranked[k - 1] == ranked[k]:
            return True
    return False


CASES = [dict(seed=20, k=4), dict(seed=21, k=10), dict(seed=22, k=25, tangled=True),
         dict(seed=23, k=2, odd_gt=True), dict(seed=24, k=7, tangled=True, num_images=30),
         dict(seed=25, k=1000)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_the_authors_definition(lvis_api, tmp_path: Path, case: dict[str, Any]) -> None:  # noqa: F811
    case = dict(case)
    k = case.pop("k")
    gt, dets = make_case(**case)
    if k < 100:
        assert budget_has_ties(dets, k), "the case should put a tie across the budget"
    ours = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=k)
    assert_same_as_reference(ours, reference_fixed_ap(lvis_api, gt, dets, k, tmp_path))
    assert ours["num_detections"] == len(authors_budget(dets, k))
    assert (ours["protocol"], ours["max_dets"], ours["max_dets_per_class"]) == ("fixed", None, k)
    json.dumps(ours)


def test_a_budget_above_every_class_is_lvis_without_the_per_image_cap() -> None:
    gt, dets = make_case(26)
    fixed = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=len(dets))
    uncapped = evaluate_lvis(annotations=gt, detections=dets, max_dets=len(dets))
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "per_class"):
        assert fixed[key] == uncapped[key], key
    assert fixed["num_classes_below_budget"] == len(gt["categories"])


def rescored(dets: list[dict[str, Any]], gt: dict) -> list[dict[str, Any]]:
    """Every class's scores through its own strictly increasing map (exact in floats:
    a power-of-two scale, then a shift far larger than the 0.1 steps of the scores)."""
    out = copy.deepcopy(dets)
    cats = sorted(c["id"] for c in gt["categories"])
    for det in out:
        j = cats.index(det["category_id"])
        det["score"] = det["score"] * 2.0 ** (j % 5 - 2) + (j % 3) * 4.0
    return out


def test_per_class_monotone_rescoring_cannot_change_fixed_ap() -> None:
    gt, dets = make_case(27, max_dets=10)
    other = rescored(dets, gt)
    fixed_a = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=6)
    fixed_b = evaluate_fixed_ap(annotations=gt, detections=other, max_dets_per_class=6)
    assert fixed_a == fixed_b
    # The same rescoring moves AP under the per-image cap: the test data can tell.
    lvis_a = evaluate_lvis(annotations=gt, detections=dets, max_dets=10)
    lvis_b = evaluate_lvis(annotations=gt, detections=other, max_dets=10)
    assert lvis_a["AP"] != lvis_b["AP"]


def _one_class_case(order: list[str]) -> tuple[dict, list[dict]]:
    """One class with one box; three detections of equal score: a hit and two misses."""
    gt = {"images": [{"id": 1, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                           "area": 100}],
          "categories": [{"id": 1, "name": "a", "frequency": "f", "image_count": 500}]}
    boxes = {"hit": [0, 0, 10, 10], "miss": [50, 50, 10, 10]}
    return gt, [{"image_id": 1, "category_id": 1, "bbox": boxes[o], "score": 0.5} for o in order]


def test_ties_at_the_budget_go_to_the_detection_listed_first() -> None:
    gt, dets = _one_class_case(["miss", "miss", "hit"])
    assert evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=2)["AP"] == 0.0
    gt, dets = _one_class_case(["hit", "miss", "miss"])
    out = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=2)
    assert out["AP"] == pytest.approx(1.0)
    assert out["num_detections"] == 2 and out["num_classes_below_budget"] == 0


def test_the_budget_counts_detections_the_federated_rules_drop() -> None:
    """The authors take the budget before lvis-api's filters: a better-scored detection
    on an image where its class is neither annotated nor verified absent is dropped
    from the evaluation but still uses up the budget."""
    gt, _ = _one_class_case([])
    gt["images"].append({"id": 2, "neg_category_ids": [], "not_exhaustive_category_ids": []})
    dets = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}]
    assert evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=1)["AP"] == 0.0
    assert evaluate_fixed_ap(annotations=gt, detections=dets,
                             max_dets_per_class=2)["AP"] == pytest.approx(1.0)


def test_empty_detections_give_zero_ap_where_there_is_ground_truth() -> None:
    gt, _ = make_case(28)
    out = evaluate_fixed_ap(annotations=gt, detections=[], max_dets_per_class=5)
    assert out["AP"] == 0.0 and out["APr"] == 0.0 and out["num_detections"] == 0
    with_gt = {a["category_id"] for a in gt["annotations"]}
    for entry in out["per_class"]:
        assert entry["AP"] == (0.0 if entry["category_id"] in with_gt else None)
    assert out["num_classes_below_budget"] == len(gt["categories"])


def test_no_ground_truth_at_all_is_undefined_not_zero() -> None:
    gt, dets = make_case(29)
    gt["annotations"] = []
    for img in gt["images"]:
        img["neg_category_ids"] = [c["id"] for c in gt["categories"]]
    out = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=5)
    assert all(out[k] == -1.0 for k in ("AP", "AP50", "APr", "APc", "APf"))
    assert all(entry["AP"] is None for entry in out["per_class"])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_budget_names_the_setting(bad: Any) -> None:
    gt, dets = make_case(30)
    with pytest.raises(BaclError, match="max_dets_per_class"):
        evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=bad)


def test_unknown_category_names_the_detection() -> None:
    gt, dets = make_case(31)
    dets[4]["category_id"] = 424242
    with pytest.raises(ValueError, match=r"detection 4 .*category_id 424242"):
        evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=5)
