"""Record-by-record checks that say exactly what is wrong with a record.

The fast reader (:mod:`bacl.lvis_format.reader`) lets ``msgspec`` validate records
against :mod:`bacl.lvis_format.records` while it parses; when that fails, the record
it points at is handed to these plain-Python checks, which state the rule of the
format the record breaks, in the words of the format (``'bbox' must be 4 numbers
[x, y, width, height]``), naming the file, the record (section, index and id) and
the key. They mirror the record types rule for rule; the tests check both agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bacl.lvis_format.errors import AnnotationError
from bacl.lvis_format.records import FREQUENCIES, REQUIRED_TOP_LEVEL_KEYS

_MAX_REPR = 100


def record_label(section: str, index: int, record_id: Any) -> str:
    """``annotations[3] (id=42)``: a record as messages name it."""
    return f"{section}[{index}] (id={record_id})"


def record_error(source: str, section: str, index: int, record_id: Any,
                 problem: str) -> AnnotationError:
    return AnnotationError(f"{source}: {record_label(section, index, record_id)}: {problem}")


def check_top_level(data: Any, source: str, *, type_name: str | None = None) -> None:
    """The file is an object whose ``images``, ``annotations`` and ``categories`` are lists.

    ``type_name`` stands for ``type(data).__name__`` when ``data`` was not built.
    """
    if not isinstance(data, Mapping):
        found = type_name or type(data).__name__
        raise AnnotationError(
            f"{source}: the top-level JSON value must be an object with keys "
            f"{list(REQUIRED_TOP_LEVEL_KEYS)}, got {found}"
        )
    for key in REQUIRED_TOP_LEVEL_KEYS:
        if key not in data:
            raise AnnotationError(
                f"{source}: missing top-level key '{key}' (an LVIS-format file needs "
                f"{list(REQUIRED_TOP_LEVEL_KEYS)}; found {sorted(data)})"
            )
        if not isinstance(data[key], list):
            raise AnnotationError(
                f"{source}: top-level '{key}' must be a list, got {type(data[key]).__name__}"
            )


def check_record(section: str, index: int, record: Any, source: str) -> None:
    """Raise :class:`AnnotationError` if ``record`` breaks a rule of its section's type."""
    if not isinstance(record, dict):
        raise record_error(source, section, index, "?",
                           f"must be an object, got {type(record).__name__}")
    {"images": _check_image, "annotations": _check_annotation,
     "categories": _check_category}[section](record, _Fail(source, section, index, record))


def check_segmentation(index: int, record_id: Any, value: Any, source: str) -> None:
    """Polygons ``[[x1, y1, x2, y2, ...], ...]`` of finite numbers, an RLE object or null."""
    if value is None or isinstance(value, dict):
        return
    fail = _Fail(source, "annotations", index, {"id": record_id})
    if not isinstance(value, list) or not all(
        isinstance(p, list) and all(_is_number(v) for v in p) for p in value
    ):
        fail.problem("'segmentation' must be polygons [[x1, y1, x2, y2, ...], ...] or an "
                     f"RLE object, got {_short_repr(value)}")
    for j, polygon in enumerate(value):
        if len(polygon) % 2:
            fail.problem(f"'segmentation' polygon {j} has an odd number of coordinates "
                         f"({len(polygon)})")
        if not all(math.isfinite(v) for v in polygon):
            fail.problem(f"'segmentation' polygon {j} has a non-finite coordinate")


# --------------------------------------------------------------------------- rules


class _Fail:
    """Raises the error of one record."""

    def __init__(self, source: str, section: str, index: int, record: dict) -> None:
        self.source, self.section, self.index = source, section, index
        self.record = record

    def problem(self, text: str) -> None:
        raise record_error(self.source, self.section, self.index,
                           self.record.get("id", "?"), text)

    def require(self, key: str, ok: bool, what: str) -> None:
        if key not in self.record:
            self.problem(f"missing required key '{key}'")
        self.optional(key, ok, what)

    def optional(self, key: str, ok: bool, what: str) -> None:
        if key in self.record and not ok:
            self.problem(f"'{key}' must be {what}, got {_short_repr(self.record[key])}")


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is an int subclass; True is not an id


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _is_int_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


def _check_image(rec: dict, fail: _Fail) -> None:
    fail.require("id", _is_int(rec.get("id")), "an integer")
    for key in ("height", "width"):
        v = rec.get(key)
        fail.optional(key, _is_int(v) and v > 0, "a positive integer")
    for key in ("file_name", "coco_url"):
        fail.optional(key, isinstance(rec.get(key), str), "a string")
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        fail.optional(key, _is_int_list(rec.get(key)), "a list of category ids")


def _check_annotation(rec: dict, fail: _Fail) -> None:
    for key in ("id", "image_id", "category_id"):
        fail.require(key, _is_int(rec.get(key)), "an integer")
    bbox = rec.get("bbox")
    ok = isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
    fail.require("bbox", ok, "4 numbers [x, y, width, height]")
    fail.optional("area", _is_number(rec.get("area")), "a number")


def _check_category(rec: dict, fail: _Fail) -> None:
    fail.require("id", _is_int(rec.get("id")), "an integer")
    fail.require("name", isinstance(rec.get("name"), str), "a string")
    if "frequency" in rec and rec["frequency"] not in FREQUENCIES:
        fail.problem(f"'frequency' must be one of {list(FREQUENCIES)}, "
                     f"got {_short_repr(rec['frequency'])}")
    count = rec.get("image_count")
    fail.optional("image_count", count is None or _is_int(count), "an integer")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR - 3] + "..."
