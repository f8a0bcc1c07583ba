"""bacl's LVIS evaluator against the official lvis-api, plus its input checks.

lvis 0.5.3 uses ``np.float``, removed in numpy 1.24; the ``lvis_api`` fixture puts the
alias back for the duration of a test only (never in the package).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bacl.evaluation.lvis_eval import _order_by, evaluate_lvis, top_scored_per_image, write_metrics

# lvis-api logs with the deprecated Logger.warn.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
TOL = 1e-9  # the brief asks for 1e-4; the implementation reproduces lvis-api's floats


@pytest.fixture
def lvis_api(monkeypatch: pytest.MonkeyPatch):
    # lvis imports pycocotools without declaring it; without it there is no reference.
    pytest.importorskip("pycocotools", reason="the lvis-api reference needs pycocotools")
    monkeypatch.setattr(np, "float", float, raising=False)
    import lvis

    return lvis


def reference_metrics(lvis_api, gt: dict[str, Any], dets: Any, tmp_path: Path,
                      max_dets: int) -> dict[str, Any]:
    """Summary and per-class AP (None where absent) from lvis-api's LVISEval."""
    gt_path = tmp_path / "reference_gt.json"
    gt_path.write_text(json.dumps(gt))
    lvis_gt = lvis_api.LVIS(str(gt_path))
    results = str(dets) if isinstance(dets, Path) else copy.deepcopy(dets)
    lvis_dt = lvis_api.LVISResults(lvis_gt, results, max_dets=max_dets)
    ev = lvis_api.LVISEval(lvis_gt, lvis_dt, iou_type="bbox")
    ev.run()
    precision = ev.eval["precision"][:, :, :, 0]
    per_class = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k]
        per_class.append(float(np.mean(p[p > -1])) if (p > -1).any() else None)
    return {"summary": {k: float(ev.results[k]) for k in SUMMARY_KEYS}, "per_class": per_class}


def assert_same_as_reference(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    for key in SUMMARY_KEYS:
        assert abs(ours[key] - ref["summary"][key]) <= TOL, (key, ours[key], ref["summary"][key])
    assert len(ours["per_class"]) == len(ref["per_class"])
    for entry, expected in zip(ours["per_class"], ref["per_class"]):
        if expected is None:
            assert entry["AP"] is None, entry
        else:
            assert entry["AP"] is not None and abs(entry["AP"] - expected) <= TOL, (entry, expected)


def _box(rng: np.random.Generator, size: str) -> list[float]:
    lo, hi = {"small": (4, 30), "medium": (33, 95), "large": (100, 300)}[size]
    w, h = rng.uniform(lo, hi, size=2)
    x, y = rng.uniform(0, 300, size=2)
    return [round(float(x), 1), round(float(y), 1), round(float(w), 1), round(float(h), 1)]


def make_case(seed: int, *, num_images: int = 24, num_cats: int = 15, max_dets: int = 20,
              tangled: bool = False, odd_gt: bool = False) -> tuple[dict, list[dict]]:
    """A small LVIS-like gt dict and detection list exercising the federated rules.

    Covers: images without gt, a category only in negative lists, a category with gt
    but no detection, not-exhaustive categories, all area ranges (and their exact
    boundaries), all frequencies, images with more than ``max_dets`` detections, ties
    in score, zero-area detections, detections in unlisted categories, interleaved
    input order. ``tangled`` adds overlapping and duplicated boxes of one category;
    ``odd_gt`` adds lvis-api's ``ignore`` key and an annotation with id 0.
    """
    rng = np.random.default_rng(seed)
    freqs = ["r", "c", "f"]
    cats = [{"id": 3 * i + 2, "name": f"cat{i}", "frequency": freqs[i % 3],
             "image_count": int(rng.integers(1, 300))} for i in range(num_cats)]
    cat_ids = [c["id"] for c in cats]
    never_detected, only_negative = cat_ids[0], cat_ids[1]
    gt_cats = [c for c in cat_ids if c != only_negative]
    images, anns, dets = [], [], []
    for i in range(num_images):
        img_id = 1000 - 7 * i  # not sorted in the file
        n_pos = 0 if i % 6 == 0 else int(rng.integers(1, 4))
        pos = [int(c) for c in rng.choice(gt_cats, size=n_pos, replace=False)]
        if i == 1:
            pos = sorted(set(pos) | {never_detected})
        others = [c for c in cat_ids if c not in pos]
        neg = [int(c) for c in rng.choice(others, size=int(rng.integers(0, 4)), replace=False)]
        if i % 4 == 0 and only_negative not in neg:
            neg.append(only_negative)
        not_exhaustive = [c for c in pos if rng.random() < 0.3]
        images.append({"id": img_id, "width": 640, "height": 480, "neg_category_ids": neg,
                       "not_exhaustive_category_ids": not_exhaustive})
        gt_boxes = []
        for cat in pos:
            for _ in range(int(rng.integers(1, 5))):
                box = _box(rng, str(rng.choice(["small", "medium", "large"])))
                area = round(box[2] * box[3] * float(rng.uniform(0.5, 1.0)), 2)
                if rng.random() < 0.1:
                    area = float(rng.choice([32 ** 2, 96 ** 2]))  # exact range boundaries
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                             "bbox": box, "area": area})
                gt_boxes.append((cat, box))
                if tangled and rng.random() < 0.5:
                    # A shifted copy and an exact duplicate with another area: one
                    # detection can then match several boxes, ties in IoU included.
                    x, y, w, h = box
                    shifted = [x + 0.1 * w, y, w, h]
                    for b, a in ((shifted, area), (box, round(area * 3.1, 2))):
                        anns.append({"id": len(anns) + 1, "image_id": img_id,
                                     "category_id": cat, "bbox": b, "area": a})
                        gt_boxes.append((cat, b))
        n_dets = int(rng.integers(0, max_dets + 12))
        for _ in range(n_dets):
            if gt_boxes and rng.random() < 0.6:
                cat, (x, y, w, h) = gt_boxes[int(rng.integers(len(gt_boxes)))]
                if rng.random() < 0.2:
                    cat = int(rng.choice(pos + neg if pos + neg else cat_ids))
                jx, jy, jw, jh = rng.normal(0, 0.08, size=4)
                box = [x + jx * w, y + jy * h, w * (1 + jw), h * (1 + jh)]
            else:
                pool = pos + neg if (pos + neg) and rng.random() < 0.7 else cat_ids
                cat = int(rng.choice(pool))
                box = _box(rng, str(rng.choice(["small", "medium", "large"])))
            if cat == never_detected:
                cat = only_negative
            if rng.random() < 0.03:
                box[2] = 0.0  # zero area: lvis-api drops it
            elif rng.random() < 0.05:
                box[2], box[3] = 32.0, 32.0  # area exactly on the small/medium boundary
            score = round(float(rng.uniform(0, 1)), 1)  # coarse: many ties
            dets.append({"image_id": img_id, "category_id": int(cat),
                         "bbox": [round(float(v), 2) for v in box], "score": score})
    if odd_gt:
        for ann in anns[::5]:
            ann["ignore"] = 1
        anns[3]["id"] = 0
    rng.shuffle(anns)
    rng.shuffle(images)
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


CASES = [
    dict(seed=0),
    dict(seed=1, max_dets=10),
    dict(seed=2, tangled=True),
    dict(seed=3, tangled=True, max_dets=8, num_images=30),
    dict(seed=4, odd_gt=True),
    dict(seed=5, tangled=True, odd_gt=True, num_cats=9),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_lvis_api_from_memory(lvis_api, tmp_path: Path, case: dict[str, Any]) -> None:
    gt, dets = make_case(**case)
    max_dets = case.get("max_dets", 20)
    assert max(np.unique([d["image_id"] for d in dets], return_counts=True)[1]) > max_dets
    ours = evaluate_lvis(annotations=gt, detections=dets, max_dets=max_dets)
    assert_same_as_reference(ours, reference_metrics(lvis_api, gt, dets, tmp_path, max_dets))
    assert ours["num_images"] == len(gt["images"])
    assert ours["max_dets"] == max_dets
    json.dumps(ours)  # serialisable


def test_matches_lvis_api_on_hand_made_corner_cases(lvis_api, tmp_path: Path) -> None:
    """Cases random data rarely hits: equal IoU with two boxes, annotation id 0."""
    cats = [{"id": 1, "name": "a", "frequency": "f", "image_count": 200},
            {"id": 2, "name": "b", "frequency": "r", "image_count": 2},
            {"id": 3, "name": "c", "frequency": "c", "image_count": 20}]
    images = [{"id": i, "neg_category_ids": [], "not_exhaustive_category_ids": []}
              for i in (1, 2, 3, 4)]
    anns = [
        # Image 1: the first detection has the same IoU (9/11) with both boxes. lvis-api
        # gives it the last one, so the second detection (exactly on that box) must take
        # the first box at IoU 2/3: a true positive only up to threshold 0.65.
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 6, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "area": 100},
        # Image 2: lvis-api stores the matched box's id, so a match to id 0 reads as
        # "unmatched" (a false positive), while the box still counts as ground truth.
        {"id": 0, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400},
        {"id": 7, "image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400},
        # Images 3 and 4: IoUs exactly equal to thresholds 0.5 and 0.75 (which match),
        # with one reachable box (image 3) and with two (image 4).
        {"id": 8, "image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 9, "image_id": 4, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 10, "image_id": 4, "category_id": 3, "bbox": [0, 0, 10, 15], "area": 150},
    ]
    dets = [{"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "score": 0.8},
            {"image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "score": 0.9},
            {"image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.5},
            {"image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 20], "score": 0.9},
            {"image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 7.5], "score": 0.8},
            {"image_id": 4, "category_id": 3, "bbox": [0, 0, 10, 20], "score": 0.9},
            {"image_id": 4, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.8}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    ours = evaluate_lvis(annotations=gt, detections=dets)
    assert_same_as_reference(ours, reference_metrics(lvis_api, gt, dets, tmp_path, 300))
    # Both true positives up to 0.65; then [TP, FP] up to 0.8; then [FP, TP]; each of
    # the latter reaches recall 0.5, i.e. 51 of the 101 recall levels.
    per_thr = [1.0] * 4 + [51 / 101] * 3 + [0.5 * 51 / 101] * 3
    ap_a = float(np.mean(per_thr))
    assert ours["per_class"][0]["AP"] == pytest.approx(ap_a, abs=1e-6)
    assert ours["per_class"][1]["AP"] == pytest.approx(0.5 * 51 / 101, abs=1e-6)


def test_matches_lvis_api_from_files(lvis_api, tmp_path: Path) -> None:
    gt, dets = make_case(7, tangled=True)
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dets))
    ours = evaluate_lvis(annotations=gt_path, detections=str(dt_path), max_dets=20)
    assert_same_as_reference(ours, reference_metrics(lvis_api, gt, dt_path, tmp_path, 20))
    assert ours == evaluate_lvis(annotations=gt, detections=dets, max_dets=20)


def test_dict_of_arrays_equals_list() -> None:
    gt, dets = make_case(8)
    arrays = {"image_id": np.array([d["image_id"] for d in dets]),
              "category_id": np.array([d["category_id"] for d in dets], dtype=np.int32),
              "bbox": np.array([d["bbox"] for d in dets], dtype=np.float32).astype(np.float64),
              "score": np.array([d["score"] for d in dets])}
    for d, box in zip(dets, arrays["bbox"]):
        d["bbox"] = box.tolist()
    assert evaluate_lvis(annotations=gt, detections=arrays) == evaluate_lvis(annotations=gt,
                                                                             detections=dets)


def test_large_ids_give_the_same_metrics() -> None:
    """Ids too large for a lookup table take the binary-search path; results must not move."""
    gt, dets = make_case(16)
    big = copy.deepcopy(gt)
    for img in big["images"]:
        img["id"] += 10 ** 12
        img["neg_category_ids"] = [c + 10 ** 9 for c in img["neg_category_ids"]]
        img["not_exhaustive_category_ids"] = [c + 10 ** 9
                                              for c in img["not_exhaustive_category_ids"]]
    for cat in big["categories"]:
        cat["id"] += 10 ** 9
    for ann in big["annotations"]:
        ann["image_id"] += 10 ** 12
        ann["category_id"] += 10 ** 9
    big_dets = [{**d, "image_id": d["image_id"] + 10 ** 12,
                 "category_id": d["category_id"] + 10 ** 9} for d in dets]
    small, large = evaluate_lvis(annotations=gt, detections=dets), evaluate_lvis(
        annotations=big, detections=big_dets)
    for entry in large["per_class"]:
        entry["category_id"] -= 10 ** 9
    assert small == large


def test_output_fields_and_frequencies() -> None:
    gt, dets = make_case(9)
    out = evaluate_lvis(annotations=gt, detections=dets)
    assert set(SUMMARY_KEYS) <= set(out)
    ids = [c["category_id"] for c in out["per_class"]]
    assert ids == sorted(c["id"] for c in gt["categories"])
    by_id = {c["id"]: c for c in gt["categories"]}
    for entry in out["per_class"]:
        assert entry["frequency"] == by_id[entry["category_id"]]["frequency"]
        assert entry["image_count"] == by_id[entry["category_id"]]["image_count"]
        assert entry["name"] == by_id[entry["category_id"]]["name"]
    # The category that only appears in negative lists has no ground truth.
    assert out["per_class"][ids.index(gt["categories"][1]["id"])]["AP"] is None
    # The category with ground truth but no detection scores 0.
    assert out["per_class"][ids.index(gt["categories"][0]["id"])]["AP"] == 0.0
    assert out["num_detections"] <= len(dets)
    assert (out["protocol"], out["max_dets"], out["max_dets_per_class"]) == ("lvis", 300, None)


def test_top_scored_per_image_matches_stable_python_sort() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 5, size=200)
    scores = np.round(rng.random(200), 1)
    kept = set(top_scored_per_image(img, scores, 7).tolist())
    expected = set()
    for i in range(5):
        idx = [j for j in range(200) if img[j] == i]
        expected |= set(sorted(idx, key=lambda j: scores[j], reverse=True)[:7])
    assert kept == expected


@pytest.mark.parametrize("span", [10, 2 ** 40])  # packed int64 keys, then the lexsort fallback
def test_order_by_equals_lexsort(span: int) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, size=100), rng.integers(0, span, size=100)
    unique = rng.permutation(100) * (span // 10)
    assert np.array_equal(_order_by(a, b, unique), np.lexsort((unique, b, a)))


def test_empty_detections_give_zero_ap() -> None:
    gt, _ = make_case(10)
    out = evaluate_lvis(annotations=gt, detections=[])
    assert out["num_detections"] == 0
    assert out["AP"] == 0.0 and out["AP50"] == 0.0
    with_gt = {a["category_id"] for a in gt["annotations"]}
    for entry in out["per_class"]:
        assert entry["AP"] == (0.0 if entry["category_id"] in with_gt else None)


def test_unknown_category_names_detection_and_id() -> None:
    gt, dets = make_case(11)
    dets[3]["category_id"] = 99999
    with pytest.raises(ValueError, match=r"detection 3 .*category_id 99999"):
        evaluate_lvis(annotations=gt, detections=dets)


def test_unknown_image_names_detection_and_id() -> None:
    gt, dets = make_case(11)
    dets[5]["image_id"] = 123456
    with pytest.raises(ValueError, match=r"detection 5 .*image_id 123456"):
        evaluate_lvis(annotations=gt, detections=dets)


def test_missing_key_in_list_names_index_and_key() -> None:
    gt, dets = make_case(12)
    del dets[2]["score"]
    with pytest.raises(ValueError, match=r"detections\[2\] is missing the key 'score'"):
        evaluate_lvis(annotations=gt, detections=dets)


def test_missing_key_in_file_names_file_index_and_key(tmp_path: Path) -> None:
    gt, dets = make_case(12)
    del dets[4]["bbox"]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    with pytest.raises(ValueError, match=r"dets\.json.*bbox.*\$\[4\]"):
        evaluate_lvis(annotations=gt, detections=path)


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    gt, dets = make_case(13)
    path = tmp_path / "broken_results.json"
    path.write_text(json.dumps(dets)[:-40])
    with pytest.raises(ValueError, match="broken_results.json"):
        evaluate_lvis(annotations=gt, detections=path)
    gt_path = tmp_path / "broken_gt.json"
    gt_path.write_text("{\"images\": [")
    with pytest.raises(ValueError, match="broken_gt.json"):
        evaluate_lvis(annotations=gt_path, detections=dets)


@pytest.mark.parametrize("bad", [{"score": float("nan")}, {"bbox": [0, 0, float("inf"), 3]},
                                 {"image_id": 1.5}, {"bbox": [1, 2, 3]}, {"score": "high"}])
def test_bad_values_are_rejected(bad: dict[str, Any]) -> None:
    gt, dets = make_case(14)
    dets[1].update(bad)
    with pytest.raises(ValueError, match=r"detection(s\[1\]| 1)"):
        evaluate_lvis(annotations=gt, detections=dets)


def test_bad_max_dets() -> None:
    gt, dets = make_case(15)
    with pytest.raises(ValueError, match="max_dets"):
        evaluate_lvis(annotations=gt, detections=dets, max_dets=0)


def test_write_metrics_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    write_metrics(path, {"AP": 0.25, "per_class": [{"AP": None}]})
    assert json.loads(path.read_text()) == {"AP": 0.25, "per_class": [{"AP": None}]}


def test_write_metrics_keeps_old_file_on_failure(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_metrics(path, {"AP": 0.5})
    before = path.read_text()
    with pytest.raises(TypeError):
        write_metrics(path, {"AP": object()})
    assert path.read_text() == before

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_metrics(path, {"AP": 0.75})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
