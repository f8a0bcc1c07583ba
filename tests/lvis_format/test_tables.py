"""Id lookup and image paths of the LVIS format's column tables."""

from __future__ import annotations

import numpy as np
import pytest

from bacl.lvis_format import AnnotationError, image_relative_path, index_in
from bacl.lvis_format.tables import first_ids, unique_ids_order


@pytest.mark.parametrize("high", [50, 10 ** 12])  # the lookup table, then binary search
def test_index_in_matches_a_dict(high):
    rng = np.random.default_rng(0)
    known = np.unique(rng.integers(0, high, size=40))
    queries = np.concatenate([rng.choice(known, 30), rng.integers(-5, high + 5, size=30),
                              [-1, high + 10 ** 6]])
    position = {int(v): i for i, v in enumerate(known)}
    expected = [position.get(int(q), -1) for q in queries]
    assert index_in(known, queries).tolist() == expected


def test_index_in_empty():
    assert index_in(np.zeros(0, np.int64), np.array([1, 2])).tolist() == [-1, -1]
    assert index_in(np.array([3]), np.zeros(0, np.int64)).shape == (0,)


def test_unique_ids_order_sorts_stably_and_names_duplicates():
    ids = np.array([7, 3, 9])
    assert unique_ids_order(ids, "image", "images", "f.json").tolist() == [1, 0, 2]
    with pytest.raises(AnnotationError,
                       match=r"f\.json: duplicate image id 3 \(images\[1\] and images\[3\]\)"):
        unique_ids_order(np.array([7, 3, 9, 3, 3]), "image", "images", "f.json")
    assert unique_ids_order(np.zeros(0, np.int64), "image", "images", "f.json").shape == (0,)


def test_first_ids():
    assert first_ids(np.arange(3)) == "0, 1, 2"
    assert first_ids(np.arange(8)) == "0, 1, 2, 3, 4, ..."



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
