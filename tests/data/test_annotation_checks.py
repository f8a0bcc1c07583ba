"""Box repairs for training; the file checks themselves are in tests/lvis_format/test_reader.py."""

from __future__ import annotations

import logging

import numpy as np

import bacl.lvis_format
from bacl.data.annotation_checks import AnnotationError, clean_boxes

SOURCE = "ann.json"


def test_annotation_error_is_the_format_readers():
    assert AnnotationError is bacl.lvis_format.AnnotationError


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
