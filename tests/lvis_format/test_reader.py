"""Every bad-input case of an annotation file gives an error naming the file and record.

Each case runs twice: on the dict (the slow record checks) and on the same content
written to a file (msgspec's fast path, then the diagnosis of the record it points
at). Both must give the same message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bacl.errors import BaclError, MissingFileError
from bacl.lvis_format import (EVALUATION_KEYS, MISSING, POLYGONS, RLE, TRAINING_KEYS,
                              AnnotationError, read_lvis)
from bacl.lvis_format import polygons as polygons_module

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


@pytest.fixture(params=["dict", "file"])
def read(request, tmp_path: Path):
    """``read(data, **kwargs)``: read_lvis on the dict, or on it written as SOURCE."""
    def run(data, **kwargs):
        kwargs.setdefault("require", TRAINING_KEYS)
        if request.param == "dict":
            return read_lvis(data, source=SOURCE, **kwargs)
        path = tmp_path / "file.json"
        path.write_text(json.dumps(data))
        return read_lvis(path, source=SOURCE, **kwargs)
    return run


@pytest.fixture
def raises(read):
    def check(data, *fragments: str, **kwargs) -> str:
        with pytest.raises(AnnotationError) as info:
            read(data, **kwargs)
        message = str(info.value)
        assert message.startswith(f"{SOURCE}: "), message
        for fragment in fragments:
            assert fragment in message, message
        assert isinstance(info.value, BaclError) and isinstance(info.value, ValueError)
        # The record-level diagnosis found the problem, not the generic fallback.
        assert "is not valid:" not in message and "not a valid LVIS" not in message, message
        return message
    return check


def test_valid_file_gives_column_arrays(read):
    out = read(valid())
    assert out.source == SOURCE
    assert [c["id"] for c in out.categories] == [5, 9]
    assert out.categories[0] == {"id": 5, "name": "a", "frequency": "r"}  # every key kept
    assert out.category_ids.tolist() == [5, 9]
    assert out.image_ids.tolist() == [1, 2]
    assert out.image_heights.tolist() == [8, 6] and out.image_widths.tolist() == [10, 6]
    assert out.image_paths == ["a.jpg", "val2017/000000000002.jpg"]
    assert out.ann_ids.tolist() == [40, 41, 42]
    assert out.ann_image_index.tolist() == [0, 1, 0]
    assert out.ann_category_index.tolist() == [0, 1, 1]
    assert out.ann_category_ids.tolist() == [5, 9, 9]
    assert out.ann_image_ids.tolist() == [1, 2, 1]
    assert out.ann_boxes_xywh.dtype == np.float64
    assert out.ann_boxes_xywh[1].tolist() == [1.5, 1, 2, 2.25]
    assert np.isnan(out.ann_areas).all() and not out.ann_ignore.any()
    assert [r.tolist() for r in out.image_neg_category_ids] == [[], []]
    assert out.polygons is None


def test_dict_and_file_give_the_same_tables(tmp_path: Path):
    data = valid()
    data["images"][0]["neg_category_ids"] = [9, 5]
    data["images"][1]["not_exhaustive_category_ids"] = [9]
    data["annotations"][1].update(area=3.5, ignore=1)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    a, b = read_lvis(data, source="x"), read_lvis(path, source="x")
    for field in a.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif field.startswith("image_n"):
            assert [r.tolist() for r in x] == [r.tolist() for r in y]
        else:
            assert x == y, field
    assert [r.tolist() for r in a.image_neg_category_ids] == [[9, 5], []]
    assert [r.tolist() for r in a.image_not_exhaustive_category_ids] == [[], [9]]
    assert a.ann_ignore.tolist() == [False, True, False]
    assert a.ann_areas[1] == 3.5


def test_no_annotations_is_valid(read):
    data = valid()
    data["annotations"] = []
    out = read(data)
    assert out.ann_ids.shape == (0,) and out.ann_boxes_xywh.shape == (0, 4)
    assert read(data, segmentation=True).polygons.kind.shape == (0,)


def test_unknown_required_key_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown required keys"):
        read_lvis(valid(), require=("images.colour",))


# ------------------------------------------------------------------- reading the file


def test_malformed_json_names_file_line_and_column(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [],\n  "annotations": [}\n')
    with pytest.raises(AnnotationError) as info:
        read_lvis(path)
    message = str(info.value)
    assert str(path) in message and "line 3, column 19" in message
    assert "truncated" not in message


def test_column_counts_characters_not_bytes(tmp_path: Path):
    path = tmp_path / "accent.json"
    path.write_text('{"images": [{"file_name": "été.jpg", } ]}', encoding="utf-8")
    with pytest.raises(AnnotationError, match="line 1, column 38"):
        read_lvis(path)


@pytest.mark.parametrize("cut", [0.5, 0.9, 1.0])
def test_truncated_json_says_so(tmp_path: Path, cut: float):
    path = tmp_path / "cut.json"
    text = json.dumps(valid(), indent=1 if cut == 0.9 else None)
    path.write_text(text[: int(len(text) * cut) - 1])
    with pytest.raises(AnnotationError, match=r"line \d+, column \d+.*truncated") as info:
        read_lvis(path)
    assert str(path) in str(info.value)
    if cut == 0.5:
        assert "line 1, column" in str(info.value)


def test_binary_file(tmp_path: Path):
    path = tmp_path / "zip.json"
    path.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(AnnotationError, match=re.escape(str(path)) + ".*not UTF-8"):
        read_lvis(path)


def test_bad_utf8_inside_a_string(tmp_path: Path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(valid()).replace("a.jpg", "\xe9.jpg").encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"not UTF-8 text \(byte offset \d+\)"):
        read_lvis(path)


def test_byte_order_mark_is_tolerated(tmp_path: Path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(valid()).encode())
    assert read_lvis(path).image_ids.tolist() == [1, 2]


def test_missing_file(tmp_path: Path):
    with pytest.raises(MissingFileError, match="nope.json") as info:
        read_lvis(tmp_path / "nope.json")
    assert isinstance(info.value, FileNotFoundError)


def test_neither_path_nor_dict():
    with pytest.raises(TypeError, match="path or a dict"):
        read_lvis([valid()])


@pytest.mark.parametrize("text, found", [("[1, 2]", "list"), ('"x"', "str"), ("3.5", "float")])
def test_top_level_not_an_object(tmp_path: Path, text: str, found: str):
    path = tmp_path / "list.json"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=re.escape(str(path)) + f".*object.*got {found}"):
        read_lvis(path)


# ------------------------------------------------------------------- structure


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key(raises, key):
    data = valid()
    del data[key]
    message = raises(data, f"missing top-level key '{key}'")
    assert "found [" in message


def test_top_level_key_of_wrong_type(raises):
    data = valid()
    data["images"] = {"1": {}}
    raises(data, "top-level 'images' must be a list, got dict")


def test_no_categories(raises):
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
def test_record_missing_key(raises, section, index, key, expected):
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
        ("annotations", 2, "bbox", [1, 2, True, 4], "annotations[2] (id=42): 'bbox' must be 4"),
        ("annotations", 2, "bbox", "0 0 1 1", "annotations[2] (id=42): 'bbox' must be 4"),
        ("annotations", 1, "image_id", "2", "annotations[1] (id=41): 'image_id' must be an integer"),
        ("annotations", 1, "category_id", 9.0,
         "annotations[1] (id=41): 'category_id' must be an integer"),
        ("annotations", 0, "id", True, "annotations[0] (id=True): 'id' must be an integer"),
        ("annotations", 0, "area", "big", "annotations[0] (id=40): 'area' must be a number"),
        ("images", 0, "width", 0, "images[0] (id=1): 'width' must be a positive integer, got 0"),
        ("images", 0, "height", 8.5, "images[0] (id=1): 'height' must be a positive integer"),
        ("images", 0, "height", None, "images[0] (id=1): 'height' must be a positive integer"),
        ("images", 0, "file_name", 3, "images[0] (id=1): 'file_name' must be a string"),
        ("images", 1, "neg_category_ids", [9, "5"],
         "images[1] (id=2): 'neg_category_ids' must be a list of category ids"),
        ("categories", 1, "id", "5", "categories[1] (id=5): 'id' must be an integer, got '5'"),
        ("categories", 1, "frequency", "x",
         "categories[1] (id=5): 'frequency' must be one of ['r', 'c', 'f']"),
        ("categories", 1, "frequency", None,
         "categories[1] (id=5): 'frequency' must be one of ['r', 'c', 'f'], got None"),
        ("categories", 0, "image_count", 2.5,
         "categories[0] (id=9): 'image_count' must be an integer, got 2.5"),
    ],
)
def test_record_with_wrong_type(raises, section, index, key, value, expected):
    data = valid()
    data[section][index][key] = value
    raises(data, expected)


@pytest.mark.parametrize("section", ["images", "annotations", "categories"])
def test_record_not_an_object(raises, section):
    data = valid()
    data[section][1] = [1, 2]
    raises(data, f"{section}[1] (id=?): must be an object, got list")


def test_long_values_are_shortened_in_messages(raises):
    data = valid()
    data["annotations"][0]["bbox"] = list(range(500))
    message = raises(data, "annotations[0] (id=40): 'bbox' must be 4 numbers")
    assert message.endswith("...") and len(message) < 250


def test_image_without_location(raises):
    data = valid()
    del data["images"][0]["file_name"]
    data["images"][0]["coco_url"] = "http://example.org/"
    raises(data, "images[0] (id=1): needs 'file_name' or a 'coco_url'")


def test_evaluation_does_not_need_sizes_or_locations(read):
    data = valid()
    for image in data["images"]:
        for key in ("width", "height", "file_name", "coco_url"):
            image.pop(key, None)
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for ann in data["annotations"]:
        ann["area"] = 1.0
    for cat in data["categories"]:
        cat["frequency"] = "f"
    out = read(data, require=EVALUATION_KEYS)
    assert out.image_heights.tolist() == [0, 0] and out.image_paths == [None, None]


@pytest.mark.parametrize(
    "section, index, key, expected",
    [
        ("images", 1, "neg_category_ids",
         "images[1] (id=2): missing required key 'neg_category_ids'"),
        ("images", 0, "not_exhaustive_category_ids",
         "images[0] (id=1): missing required key 'not_exhaustive_category_ids'"),
        ("annotations", 2, "area", "annotations[2] (id=42): missing required key 'area'"),
        ("categories", 0, "frequency", "categories[0] (id=9): missing required key 'frequency'"),
    ],
)
def test_keys_evaluation_requires(raises, section, index, key, expected):
    data = valid()
    for image in data["images"]:
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for ann in data["annotations"]:
        ann["area"] = 1.0
    for cat in data["categories"]:
        cat["frequency"] = "c"
    del data[section][index][key]
    raises(data, expected, require=EVALUATION_KEYS)


def test_missing_key_counts_the_other_records(raises):
    data = valid()
    for image in data["images"]:
        del image["width"]
    raises(data, "images[0] (id=1): missing required key 'width' (and 1 more such images)")


# ------------------------------------------------------------------- references and ids


def test_unknown_category_names_annotation_and_category(raises):
    data = valid()
    data["annotations"][2]["category_id"] = 777
    raises(data, "annotations[2] (id=42): category_id 777 does not exist in 'categories'")


def test_unknown_image_names_annotation_and_image(raises):
    data = valid()
    data["annotations"][1]["image_id"] = 3
    data["annotations"][2]["image_id"] = 0
    raises(data, "annotations[1] (id=41): image_id 3 does not exist in 'images'",
           "and 1 more")


@pytest.mark.parametrize(
    "section, expected",
    [
        ("images", "duplicate image id 1 (images[0] and images[2])"),
        ("categories", "duplicate category id 9 (categories[0] and categories[2])"),
        ("annotations", "duplicate annotation id 40 (annotations[0] and annotations[3])"),
    ],
)
def test_duplicate_ids(raises, section, expected):
    data = valid()
    data[section].append(dict(data[section][0]))
    raises(data, expected)


# ------------------------------------------------------------------- box values


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_box(raises, bad):
    """In a file, Python's json writes NaN / Infinity literals, which JSON does not allow:
    the reader falls back to Python's json to name the record anyway."""
    data = valid()
    data["annotations"][1]["bbox"][2] = bad
    raises(data, "annotations[1] (id=41): 'bbox' has a non-finite value", repr(bad))


@pytest.mark.parametrize("bbox", [[0, 0, -1, 2], [0, 0, 2, -0.5]])
def test_negative_size_box(raises, bbox):
    data = valid()
    data["annotations"][0]["bbox"] = bbox
    raises(data, "annotations[0] (id=40): 'bbox' has a negative width or height")


# ------------------------------------------------------------------- segmentations


def with_segmentations() -> dict:
    data = valid()
    data["annotations"][0]["segmentation"] = [[0, 0, 4, 0, 4, 4], [1, 1, 2, 1, 2, 2.5, 1, 2]]
    data["annotations"][1]["segmentation"] = {"size": [6, 6], "counts": "abc"}
    return data  # annotation 42 has none


def test_segmentations_in_flat_arrays(read):
    polygons = read(with_segmentations(), segmentation=True).polygons
    assert polygons.kind.tolist() == [POLYGONS, RLE, MISSING]
    assert polygons.coordinates.dtype == np.float32
    assert polygons.coordinates.tolist() == [0, 0, 4, 0, 4, 4, 1, 1, 2, 1, 2, 2.5, 1, 2]
    assert polygons.polygon_offsets.tolist() == [0, 6, 14]
    assert polygons.annotation_offsets.tolist() == [0, 2, 2, 2]
    assert [p.tolist() for p in polygons.of_annotation(0)] == [[0, 0, 4, 0, 4, 4],
                                                               [1, 1, 2, 1, 2, 2.5, 1, 2]]
    assert polygons.of_annotation(2) == []
    assert read(with_segmentations()).polygons is None


def test_segmentations_read_in_batches(read, monkeypatch):
    monkeypatch.setattr(polygons_module, "BATCH", 2)
    data = with_segmentations()
    data["annotations"][2]["segmentation"] = [[5, 5, 6, 5, 6, 6]]
    polygons = read(data, segmentation=True).polygons
    assert polygons.kind.tolist() == [POLYGONS, RLE, POLYGONS]
    assert polygons.annotation_offsets.tolist() == [0, 2, 2, 3]
    assert polygons.of_annotation(2)[0].tolist() == [5, 5, 6, 5, 6, 6]
    data["annotations"][2]["segmentation"] = [[5, 5, "x"]]
    raises_message = "annotations[2] (id=42): 'segmentation' must be polygons"
    with pytest.raises(AnnotationError, match=re.escape(raises_message)):
        read(data, segmentation=True)


@pytest.mark.parametrize(
    "segmentation, expected",
    [
        ([1, 2, 3, 4, 5, 6], "'segmentation' must be polygons [[x1, y1, x2, y2, ...], ...] "
                             "or an RLE object, got [1, 2, 3, 4, 5, 6]"),
        ([[1, 2, None, 4, 5, 6]], "'segmentation' must be polygons"),
        ("polygon", "'segmentation' must be polygons"),
        ([[0, 0, 1, 0, 1, 1], [1, 2, 3]], "'segmentation' polygon 1 has an odd number of "
                                          "coordinates (3)"),
    ],
)
def test_bad_segmentation(raises, segmentation, expected):
    data = with_segmentations()
    data["annotations"][2]["segmentation"] = segmentation
    raises(data, f"annotations[2] (id=42): {expected}", segmentation=True)


def test_non_finite_polygon_coordinate(raises):
    data = with_segmentations()
    data["annotations"][0]["segmentation"][1][3] = float("nan")
    raises(data, "annotations[0] (id=40): 'segmentation' polygon 1 has a non-finite "
           "coordinate", segmentation=True)


def test_bad_segmentation_is_not_read_unless_asked(read):
    data = valid()
    data["annotations"][0]["segmentation"] = "not polygons"
    assert read(data).ann_ids.tolist() == [40, 41, 42]


def test_non_finite_literal_in_a_file_broken_further_on(tmp_path: Path):
    path = tmp_path / "nan_cut.json"
    text = json.dumps(valid()).replace("[2, 2, 3, 3]", "[2, 2, NaN, 3]")
    path.write_text(text[:-30])
    with pytest.raises(AnnotationError, match=r"nan_cut\.json: invalid JSON at line 1, "
                                              r"column \d+: .*truncated"):
        read_lvis(path)
    path.write_text(text.replace('"name": "a"', '"name": "a",,'))
    with pytest.raises(AnnotationError, match=r"invalid JSON at line 1, column \d+") as info:
        read_lvis(path)
    assert "truncated" not in str(info.value)
