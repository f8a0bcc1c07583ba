"""Every bad-input case of an annotation file gives an error naming the file and record."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from bacl.data.annotation_checks import (
    AnnotationError,
    check_annotations,
    clean_boxes,
    image_relative_path,
    read_annotation_json,
)

SOURCE = "ann.json"


def valid() -> dict:
    return {
        "images": [
            {"id": 1, "width": 10, "height": 8, "file_name": "a.jpg"},
            {"id": 2, "width": 6, "height": 6,
             "coco_url": "http://images.cocodataset.org/val2017/000000000002.jpg"},
        ],
        "annotations": [
            {"id": 40, "image_id": 1, "category_id": 5, "bbox": [0, 0, 4, 4]},
            {"id": 41, "image_id": 2, "category_id": 9, "bbox": [1.5, 1, 2, 2.25]},
            {"id": 42, "image_id": 1, "category_id": 9, "bbox": [2, 2, 3, 3]},
        ],
        "categories": [{"id": 9, "name": "b"}, {"id": 5, "name": "a", "frequency": "r"}],
    }


def check(data: dict):
    return check_annotations(data, source=SOURCE)


def raises(data: dict, *fragments: str) -> str:
    with pytest.raises(AnnotationError) as info:
        check(data)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_valid_file_gives_compact_index():
    out = check(valid())
    assert [c["id"] for c in out.categories] == [5, 9]
    assert out.image_ids.tolist() == [1, 2]
    assert out.image_heights.tolist() == [8, 6] and out.image_widths.tolist() == [10, 6]
    assert out.image_paths == ["a.jpg", "val2017/000000000002.jpg"]
    assert out.ann_ids.tolist() == [40, 41, 42]
    assert out.ann_image_index.tolist() == [0, 1, 0]
    assert out.ann_category_ids.tolist() == [5, 9, 9]
    assert out.ann_boxes_xywh.dtype == np.float64
    assert out.ann_boxes_xywh[1].tolist() == [1.5, 1, 2, 2.25]


def test_no_annotations_is_valid():
    data = valid()
    data["annotations"] = []
    out = check(data)
    assert out.ann_ids.shape == (0,) and out.ann_boxes_xywh.shape == (0, 4)


# ------------------------------------------------------------------- reading the file


def test_malformed_json_names_file_line_and_column(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [],\n  "annotations": [}\n')
    with pytest.raises(AnnotationError) as info:
        read_annotation_json(path)
    message = str(info.value)
    assert str(path) in message and "line 3, column 19" in message
    assert "truncated" not in message


def test_truncated_json_says_so(tmp_path: Path):
    path = tmp_path / "cut.json"
    text = json.dumps(valid())
    path.write_text(text[: len(text) // 2])
    with pytest.raises(AnnotationError, match=r"line 1, column \d+.*truncated") as info:
        read_annotation_json(path)
    assert str(path) in str(info.value)


def test_binary_file(tmp_path: Path):
    path = tmp_path / "zip.json"
    path.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(AnnotationError, match=re.escape(str(path)) + ".*not UTF-8"):
        read_annotation_json(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_annotation_json(tmp_path / "nope.json")


def test_top_level_not_an_object(tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(AnnotationError, match=re.escape(str(path)) + ".*object.*got list"):
        read_annotation_json(path)


# ------------------------------------------------------------------- structure


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key(key):
    data = valid()
    del data[key]
    raises(data, f"missing top-level key '{key}'")


def test_top_level_key_of_wrong_type():
    data = valid()
    data["images"] = {"1": {}}
    raises(data, "top-level 'images' must be a list, got dict")


def test_no_categories():
    data = valid()
    data["categories"] = []
    raises(data, "'categories' is empty")


@pytest.mark.parametrize(
    "section, index, key, expected",
    [
        ("annotations", 2, "bbox", "annotations[2] (id=42): missing required key 'bbox'"),
        ("annotations", 1, "category_id", "annotations[1] (id=41): missing required key"),
        ("annotations", 0, "id", "annotations[0] (id=?): missing required key 'id'"),
        ("images", 1, "height", "images[1] (id=2): missing required key 'height'"),
        ("categories", 0, "name", "categories[0] (id=9): missing required key 'name'"),
    ],
)
def test_record_missing_key(section, index, key, expected):
    data = valid()
    del data[section][index][key]
    raises(data, expected)


@pytest.mark.parametrize(
    "section, index, key, value, expected",
    [
        ("annotations", 2, "bbox", [1, 2, 3],
         "annotations[2] (id=42): 'bbox' must be 4 numbers [x, y, width, height], got [1, 2, 3]"),
        ("annotations", 2, "bbox", [1, 2, "3", 4], "annotations[2] (id=42): 'bbox' must be 4"),
        ("annotations", 2, "bbox", [1, 2, None, 4], "annotations[2] (id=42): 'bbox' must be 4"),
        ("annotations", 2, "bbox", "0 0 1 1", "annotations[2] (id=42): 'bbox' must be 4"),
        ("annotations", 1, "image_id", "2", "annotations[1] (id=41): 'image_id' must be an integer"),
        ("annotations", 1, "category_id", 9.0,
         "annotations[1] (id=41): 'category_id' must be an integer"),
        ("annotations", 0, "id", True, "annotations[0] (id=True): 'id' must be an integer"),
        ("images", 0, "width", 0, "images[0] (id=1): 'width' must be a positive integer, got 0"),
        ("images", 0, "height", 8.5, "images[0] (id=1): 'height' must be a positive integer"),
        ("images", 0, "file_name", 3, "images[0] (id=1): 'file_name' must be a string"),
        ("categories", 1, "id", "5", "categories[1] (id=5): 'id' must be an integer, got '5'"),
        ("categories", 1, "frequency", "x",
         "categories[1] (id=5): 'frequency' must be one of ['r', 'c', 'f']"),
    ],
)
def test_record_with_wrong_type(section, index, key, value, expected):
    data = valid()
    data[section][index][key] = value
    raises(data, expected)


@pytest.mark.parametrize("section", ["images", "annotations", "categories"])
def test_record_not_an_object(section):
    data = valid()
    data[section][1] = [1, 2]
    raises(data, f"{section}[1] (id=?): must be an object, got list")


def test_image_without_location():
    data = valid()
    del data["images"][0]["file_name"]
    data["images"][0]["coco_url"] = "http://example.org/"
    raises(data, "images[0] (id=1): needs 'file_name' or a 'coco_url'")


# ------------------------------------------------------------------- references and ids


def test_unknown_category_names_annotation_and_category():
    data = valid()
    data["annotations"][2]["category_id"] = 777
    raises(data, "annotations[2] (id=42): category_id 777 does not exist in 'categories'")


def test_unknown_image_names_annotation_and_image():
    data = valid()
    data["annotations"][1]["image_id"] = 3
    data["annotations"][2]["image_id"] = 0
    raises(data, "annotations[1] (id=41): image_id 3 does not exist in 'images'",
           "and 1 more")


@pytest.mark.parametrize(
    "section, what, expected",
    [
        ("images", "image", "duplicate image id 1 (images[0] and images[2])"),
        ("categories", "category", "duplicate category id 9 (categories[0] and categories[2])"),
        ("annotations", "annotation",
         "duplicate annotation id 40 (annotations[0] and annotations[3])"),
    ],
)
def test_duplicate_ids(section, what, expected):
    data = valid()
    data[section].append(dict(data[section][0]))
    raises(data, expected)


# ------------------------------------------------------------------- box values


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_box(bad):
    data = valid()
    data["annotations"][1]["bbox"][2] = bad
    raises(data, "annotations[1] (id=41): 'bbox' has a non-finite value")


def test_nan_written_in_the_json_file(tmp_path: Path):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(valid()).replace("[2, 2, 3, 3]", "[2, 2, NaN, 3]"))
    with pytest.raises(AnnotationError, match=r"annotations\[2\] \(id=42\).*non-finite.*nan"):
        check_annotations(read_annotation_json(path), source=str(path))


@pytest.mark.parametrize("bbox", [[0, 0, -1, 2], [0, 0, 2, -0.5]])
def test_negative_size_box(bbox):
    data = valid()
    data["annotations"][0]["bbox"] = bbox
    raises(data, "annotations[0] (id=40): 'bbox' has a negative width or height")


# ------------------------------------------------------------------- clean_boxes


def test_clean_boxes_rules(caplog):
    boxes = np.array([
        [1, 1, 2, 2],        # kept as is
        [0, 0, 0.5, 3],      # tiny width
        [12, 0, 2, 2],       # right of a 10-wide image
        [10, 0, 2, 2],       # touches the right edge only: outside
        [-1, -1, 3, 20],     # clipped on three sides
        [9.5, 7.5, 1, 1],    # overlaps by 0.5 x 0.5: clipped, kept
    ], dtype=np.float64)
    caplog.set_level(logging.WARNING)
    out = clean_boxes(boxes_xywh=boxes, image_heights=np.full(6, 8), image_widths=np.full(6, 10),
                      ann_ids=np.arange(100, 106), min_size=1.0, source=SOURCE)
    assert out.keep.tolist() == [True, False, False, False, True, True]
    assert out.boxes_xyxy[out.keep].tolist() == [[1, 1, 3, 3], [0, 0, 2, 8], [9.5, 7.5, 10, 8]]
    assert (out.num_tiny, out.num_outside, out.num_clipped) == (1, 2, 2)
    assert all(SOURCE in r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 3


def test_clean_boxes_lists_only_the_first_ids(caplog):
    n = 8
    caplog.set_level(logging.WARNING)
    clean_boxes(boxes_xywh=np.zeros((n, 4)), image_heights=np.full(n, 5),
                image_widths=np.full(n, 5), ann_ids=np.arange(n), min_size=1.0, source=SOURCE)
    (record,) = caplog.records
    assert "dropped 8 " in record.getMessage() and "0, 1, 2, 3, 4, ..." in record.getMessage()


# ------------------------------------------------------------------- image paths


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"file_name": "shard_0/img_1.png"}, "shard_0/img_1.png"),
        ({"coco_url": "http://images.cocodataset.org/train2017/000000391895.jpg"},
         "train2017/000000391895.jpg"),
        ({"file_name": "COCO_val2014_000000397133.jpg",
          "coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg"},
         "val2017/000000397133.jpg"),
        ({"file_name": "COCO_train2014_000000000009.jpg"}, "000000000009.jpg"),
        ({"file_name": "own.jpg", "coco_url": "http://x/val2017/other.jpg"}, "own.jpg"),
        ({"coco_url": "http://x/"}, None),
        ({}, None),
    ],
)
def test_image_relative_path(record, expected):
    assert image_relative_path(record) == expected
