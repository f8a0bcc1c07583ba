"""Reading ground truth and results for the evaluator (the metrics are in test_lvis_eval)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bacl.errors import BaclError, MissingFileError
from bacl.evaluation.lvis_io import (DetectionsError, GroundTruth, load_detections,
                                     load_ground_truth)
from bacl.lvis_format import AnnotationError
from tests.evaluation.test_lvis_eval import make_case


def test_evaluator_imports_without_torch():
    code = ("import sys, bacl.evaluation, bacl.evaluation.lvis_io, bacl.lvis_format; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[2])


def reference_ground_truth(gt: dict) -> dict:
    """The GroundTruth fields computed record by record."""
    image_ids = sorted(im["id"] for im in gt["images"])
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in cats]

    def pairs(key):
        return sorted({image_ids.index(im["id"]) * len(cat_ids) + cat_ids.index(c)
                       for im in gt["images"] for c in im[key] if c in cat_ids})

    anns = gt["annotations"]
    return {
        "image_ids": image_ids, "category_ids": cat_ids,
        "categories": [{"category_id": c["id"], "name": c["name"], "frequency": c["frequency"],
                        "image_count": c.get("image_count")} for c in cats],
        "frequency_index": ["rcf".index(c["frequency"]) for c in cats],
        "ann_ids": [a["id"] for a in anns], "ann_image_ids": [a["image_id"] for a in anns],
        "ann_category_ids": [a["category_id"] for a in anns],
        "ann_boxes": [a["bbox"] for a in anns], "ann_areas": [a["area"] for a in anns],
        "ann_ignore": [bool(a.get("ignore", 0)) for a in anns],
        "neg_pairs": pairs("neg_category_ids"),
        "not_exhaustive_pairs": pairs("not_exhaustive_category_ids"),
    }


@pytest.mark.parametrize("form", ["dict", "file"])
def test_ground_truth_arrays_match_a_record_by_record_reading(tmp_path: Path, form: str):
    gt, _ = make_case(4, odd_gt=True)
    gt["images"][0]["neg_category_ids"].append(123456)  # unknown category: dropped
    if form == "file":
        path = tmp_path / "gt.json"
        path.write_text(json.dumps(gt))
        ours = load_ground_truth(path)
    else:
        ours = load_ground_truth(gt)
    assert isinstance(ours, GroundTruth)
    for key, expected in reference_ground_truth(gt).items():
        got = getattr(ours, key)
        if key == "categories":
            assert got == expected
        else:
            assert got.tolist() == expected, key
            assert got.dtype == (bool if key == "ann_ignore" else
                                 np.float64 if key in ("ann_boxes", "ann_areas") else np.int64)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda gt: gt["images"][2].pop("neg_category_ids"),
         r"gt\.json: images\[2\] \(id=\d+\): missing required key 'neg_category_ids'"),
        (lambda gt: gt["annotations"][1].pop("area"),
         r"annotations\[1\] \(id=\d+\): missing required key 'area'"),
        (lambda gt: gt["categories"][0].pop("frequency"),
         r"categories\[0\] \(id=2\): missing required key 'frequency'"),
        (lambda gt: gt["categories"][3].update(frequency="rare"),
         r"categories\[3\] \(id=11\): 'frequency' must be one of \['r', 'c', 'f'\]"),
        (lambda gt: gt["annotations"][0].update(image_id=-5),
         r"annotations\[0\] \(id=\d+\): image_id -5 does not exist in 'images'"),
        (lambda gt: gt["images"].append(dict(gt["images"][0])), r"duplicate image id \d+"),
        (lambda gt: gt["annotations"][2].update(bbox=[0, 0, float("inf"), 1]),
         r"annotations\[2\] \(id=\d+\): 'bbox' has a non-finite value \[0, 0, inf, 1\]"),
    ],
)
def test_ground_truth_errors_name_file_record_and_key(tmp_path: Path, damage, expected):
    gt, _ = make_case(5)
    damage(gt)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(AnnotationError, match=expected):
        load_ground_truth(path)
    with pytest.raises(AnnotationError, match=expected.replace(r"gt\.json", "annotations")):
        load_ground_truth(gt)


def test_ground_truth_needs_no_image_sizes():
    gt, _ = make_case(6)
    for image in gt["images"]:
        del image["width"], image["height"]
    assert len(load_ground_truth(gt).image_ids) == len(gt["images"])


def test_detection_errors_are_project_errors(tmp_path: Path):
    with pytest.raises(DetectionsError) as info:
        load_detections([{"image_id": 1}])
    assert isinstance(info.value, BaclError) and isinstance(info.value, ValueError)
    with pytest.raises(MissingFileError, match="results file .*none.json"):
        load_detections(tmp_path / "none.json")


def test_malformed_results_file_names_line_and_column(tmp_path: Path):
    path = tmp_path / "dets.json"
    path.write_text('[\n {"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": .5}]')
    with pytest.raises(DetectionsError, match=r"dets\.json: invalid JSON at line 2, column \d+"):
        load_detections(path)
    path.write_text('[{"image_id": 1, "category_id": 2, "bbox": [0, 0')
    with pytest.raises(DetectionsError, match="truncated"):
        load_detections(path)
