"""Reading and validating an LVIS-format annotation JSON (LVIS v0.5, v1, synthetic).

Every error names the file and the record (section, index and id) or the key at
fault, so a bad download or a buggy generator is found from the message alone.
Problems that real LVIS contains on purpose (tiny boxes, boxes reaching outside
their image) are repaired with a logged count instead of raised; see
:func:`clean_boxes`.

The result is a compact, column-wise index (:class:`CheckedAnnotations`): LVIS v1
train has 1.27M annotations, and one Python dict per annotation kept for the life of
the dataset would cost gigabytes in every DataLoader worker.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from os import PathLike
from typing import Any, Sequence

import numpy as np

from ..errors import BaclError

logger = logging.getLogger(__name__)

REQUIRED_TOP_LEVEL_KEYS = ("images", "annotations", "categories")
FREQUENCIES = ("r", "c", "f")
# How many offending ids a message lists before it says "...".
_MAX_LISTED = 5
# COCO-2014 style names as found in LVIS v0.5 records ("COCO_val2014_000000397133.jpg").
_COCO2014_NAME = re.compile(r"^COCO_(?:train|val|test)2014_(\d{12}\.jpg)$")


class AnnotationError(BaclError, ValueError):
    """An annotation file that cannot be used as it is."""


@dataclass(frozen=True)
class CheckedAnnotations:
    """The validated content of one annotation file, column-wise.

    Images keep the file's order; annotations keep the file's order.

    Attributes:
        source: the file the content came from (for messages).
        categories: the category records, sorted by ``id``.
        image_ids: ``(N,)`` int64.
        image_heights, image_widths: ``(N,)`` int64, from the records.
        image_paths: ``N`` paths relative to the image root (see
            :func:`image_relative_path`).
        ann_ids: ``(M,)`` int64.
        ann_image_index: ``(M,)`` int64, the row of the annotation's image in ``image_ids``.
        ann_category_ids: ``(M,)`` int64.
        ann_boxes_xywh: ``(M, 4)`` float64, ``[x, y, w, h]`` as in the file.
    """

    source: str
    categories: list[dict[str, Any]]
    image_ids: np.ndarray
    image_heights: np.ndarray
    image_widths: np.ndarray
    image_paths: list[str]
    ann_ids: np.ndarray
    ann_image_index: np.ndarray
    ann_category_ids: np.ndarray
    ann_boxes_xywh: np.ndarray


def read_annotation_json(path: str | PathLike) -> dict[str, Any]:
    """Parse ``path``; a parse error names the file, line and column."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"annotation file {path} does not exist") from e
    try:
        text = raw.decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise AnnotationError(
            f"{path}: not UTF-8 text (byte offset {e.start}); is this an annotation JSON?"
        ) from e
    del raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # An unterminated string always runs into the end of the text.
        truncated = e.msg.startswith("Unterminated string") or not text[e.pos:].strip()
        hint = " (unexpected end of file: the file looks truncated)" if truncated else ""
        raise AnnotationError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}{hint}"
        ) from e
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{path}: the top-level JSON value must be an object with keys "
            f"{list(REQUIRED_TOP_LEVEL_KEYS)}, got {type(data).__name__}"
        )
    return data


def check_annotations(data: dict[str, Any], *, source: str) -> CheckedAnnotations:
    """Validate a parsed LVIS-format dict and return its compact index.

    Raises :class:`AnnotationError` for: a missing or mistyped top-level key; a record
    that is not an object, lacks a required key or has a wrongly typed value;
    duplicate image, category or annotation ids; an annotation whose ``image_id`` or
    ``category_id`` does not exist; a box with a NaN/inf value or negative size.
    """
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
    categories = _check_categories(data["categories"], source)
    image_ids, heights, widths, paths = _check_images(data["images"], source)
    ann_ids, ann_image_ids, ann_cat_ids, boxes = _check_annotation_records(
        data["annotations"], source
    )

    # Referential integrity, vectorised over sorted ids.
    order = np.argsort(image_ids, kind="stable")
    pos, found = _lookup(image_ids[order], ann_image_ids)
    if not found.all():
        bad = np.flatnonzero(~found)
        i = int(bad[0])
        raise AnnotationError(
            f"{source}: annotations[{i}] (id={int(ann_ids[i])}): image_id "
            f"{int(ann_image_ids[i])} does not exist in 'images'"
            + _and_more(len(bad) - 1, "annotation")
        )
    ann_image_index = order[pos]

    cat_ids = np.array([c["id"] for c in categories], dtype=np.int64)  # sorted
    _, found = _lookup(cat_ids, ann_cat_ids)
    if not found.all():
        bad = np.flatnonzero(~found)
        i = int(bad[0])
        raise AnnotationError(
            f"{source}: annotations[{i}] (id={int(ann_ids[i])}): category_id "
            f"{int(ann_cat_ids[i])} does not exist in 'categories'"
            + _and_more(len(bad) - 1, "annotation")
        )

    _check_box_values(boxes, ann_ids, source)
    return CheckedAnnotations(
        source=source,
        categories=categories,
        image_ids=image_ids,
        image_heights=heights,
        image_widths=widths,
        image_paths=paths,
        ann_ids=ann_ids,
        ann_image_index=ann_image_index.astype(np.int64, copy=False),
        ann_category_ids=ann_cat_ids,
        ann_boxes_xywh=boxes,
    )


def image_relative_path(record: dict[str, Any]) -> str | None:
    """Where an image record's file lies, relative to the image root.

    1. ``file_name``, unless it is a COCO-2014 style name: ``image_root / file_name``
       (the synthetic benchmark and other custom sets).
    2. Otherwise ``coco_url``'s last two components, e.g.
       ``http://images.cocodataset.org/val2017/000000397133.jpg`` ->
       ``val2017/000000397133.jpg`` (LVIS v1, whose val images come from both COCO
       2017 splits, and LVIS v0.5, whose records also carry a 2014-style
       ``file_name``). For LVIS, ``image_root`` is therefore the COCO folder that
       holds ``train2017/`` and ``val2017/``.
    3. A COCO-2014 style ``file_name`` without ``coco_url``: its 2017 name
       (``COCO_val2014_000000397133.jpg`` -> ``000000397133.jpg``) directly under
       ``image_root``.

    Returns None when the record gives no usable location.
    """
    file_name = record.get("file_name")
    coco2014 = _COCO2014_NAME.match(file_name) if isinstance(file_name, str) else None
    if isinstance(file_name, str) and file_name and coco2014 is None:
        return file_name
    coco_url = record.get("coco_url")
    if isinstance(coco_url, str) and coco_url:
        # e.g. "http://images.cocodataset.org/val2017/000000397133.jpg"
        parts = coco_url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 2)
        if len(parts) == 3 and parts[1] and parts[2] and not parts[0].endswith(":/"):
            return f"{parts[1]}/{parts[2]}"
    if coco2014 is not None:
        return coco2014.group(1)
    return None


@dataclass(frozen=True)
class CleanedBoxes:
    """The outcome of :func:`clean_boxes`.

    Attributes:
        keep: ``(M,)`` bool, annotations that stay.
        boxes_xyxy: ``(M, 4)`` float64, clipped to the image (rows of dropped ones too).
        num_tiny, num_outside, num_clipped: counts, as logged.
    """

    keep: np.ndarray
    boxes_xyxy: np.ndarray
    num_tiny: int
    num_outside: int
    num_clipped: int


def clean_boxes(
    *,
    boxes_xywh: np.ndarray,
    image_heights: np.ndarray,
    image_widths: np.ndarray,
    ann_ids: np.ndarray,
    min_size: float,
    source: str,
) -> CleanedBoxes:
    """Drop degenerate boxes and clip the rest to their image, logging what changed.

    Rules (those of the reference's mmdetection loader, plus clipping): a box with
    width or height below ``min_size`` pixels is dropped (LVIS has zero-size boxes);
    a box with no overlap with its image is dropped; a box reaching outside its image
    is clipped to it. Each kind is logged once with its count and the first ids.

    Args:
        boxes_xywh: ``(M, 4)`` finite, non-negative width/height (see
            :func:`check_annotations`).
        image_heights, image_widths: ``(M,)`` the size of each annotation's image.
        ann_ids: ``(M,)`` for the messages.
    """
    x, y, w, h = (boxes_xywh[:, k] for k in range(4))
    H = image_heights.astype(np.float64)
    W = image_widths.astype(np.float64)
    x2, y2 = x + w, y + h
    tiny = (w < min_size) | (h < min_size)
    overlap_w = np.minimum(x2, W) - np.maximum(x, 0.0)
    overlap_h = np.minimum(y2, H) - np.maximum(y, 0.0)
    outside = ~tiny & ((overlap_w <= 0) | (overlap_h <= 0))
    keep = ~(tiny | outside)
    clipped = keep & ((x < 0) | (y < 0) | (x2 > W) | (y2 > H))
    xyxy = np.stack(
        [np.clip(x, 0.0, W), np.clip(y, 0.0, H), np.clip(x2, 0.0, W), np.clip(y2, 0.0, H)],
        axis=1,
    )
    if tiny.any():
        logger.warning(
            "%s: dropped %d annotations whose box is narrower or shorter than %g px "
            "(annotation ids %s)",
            source, int(tiny.sum()), min_size, _first_ids(ann_ids[tiny]),
        )
    if outside.any():
        logger.warning(
            "%s: dropped %d annotations whose box lies entirely outside its image "
            "(annotation ids %s)",
            source, int(outside.sum()), _first_ids(ann_ids[outside]),
        )
    if clipped.any():
        logger.warning(
            "%s: clipped %d boxes that reach outside their image (annotation ids %s)",
            source, int(clipped.sum()), _first_ids(ann_ids[clipped]),
        )
    return CleanedBoxes(
        keep=keep,
        boxes_xyxy=xyxy,
        num_tiny=int(tiny.sum()),
        num_outside=int(outside.sum()),
        num_clipped=int(clipped.sum()),
    )


# --------------------------------------------------------------------------- records


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is an int subclass; True is not an id


_NUMBER_TYPES = frozenset({int, float})


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES


def _record_name(section: str, index: int, record: Any) -> str:
    rid = record.get("id", "?") if isinstance(record, dict) else "?"
    return f"{section}[{index}] (id={rid})"


def _fail(source: str, section: str, index: int, record: Any, problem: str) -> None:
    raise AnnotationError(f"{source}: {_record_name(section, index, record)}: {problem}")


def _require(
    source: str, section: str, index: int, record: Any, key: str, ok: bool, what: str
) -> None:
    if key not in record:
        _fail(source, section, index, record, f"missing required key '{key}'")
    if not ok:
        _fail(source, section, index, record, f"'{key}' must be {what}, got {record[key]!r}")


def _check_categories(records: list, source: str) -> list[dict[str, Any]]:
    if not records:
        raise AnnotationError(f"{source}: 'categories' is empty")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            _fail(source, "categories", i, rec, f"must be an object, got {type(rec).__name__}")
        _require(source, "categories", i, rec, "id", _is_int(rec.get("id")), "an integer")
        _require(source, "categories", i, rec, "name",
                 isinstance(rec.get("name"), str), "a string")
        if "frequency" in rec and rec["frequency"] not in FREQUENCIES:
            _fail(source, "categories", i, rec,
                  f"'frequency' must be one of {list(FREQUENCIES)}, got {rec['frequency']!r}")
    ids = np.array([rec["id"] for rec in records], dtype=np.int64)
    _check_unique(ids, "category", "categories", source)
    return [dict(records[i]) for i in np.argsort(ids, kind="stable")]


def _check_images(records: list, source: str):
    n = len(records)
    ids = np.empty(n, dtype=np.int64)
    heights = np.empty(n, dtype=np.int64)
    widths = np.empty(n, dtype=np.int64)
    paths: list[str] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            _fail(source, "images", i, rec, f"must be an object, got {type(rec).__name__}")
        _require(source, "images", i, rec, "id", _is_int(rec.get("id")), "an integer")
        for key in ("height", "width"):
            v = rec.get(key)
            _require(source, "images", i, rec, key, _is_int(v) and v > 0, "a positive integer")
        for key in ("file_name", "coco_url"):
            if key in rec and not isinstance(rec[key], str):
                _fail(source, "images", i, rec, f"'{key}' must be a string, got {rec[key]!r}")
        rel = image_relative_path(rec)
        if rel is None:
            _fail(source, "images", i, rec,
                  "needs 'file_name' or a 'coco_url' ending in <folder>/<file> to locate "
                  "the image file")
        ids[i] = rec["id"]
        heights[i] = rec["height"]
        widths[i] = rec["width"]
        paths.append(rel)
    _check_unique(ids, "image", "images", source)
    return ids, heights, widths, paths


def _check_annotation_records(records: list, source: str):
    n = len(records)
    ids: list[int] = [0] * n
    image_ids: list[int] = [0] * n
    cat_ids: list[int] = [0] * n
    boxes: list[list] = [[0.0] * 4] * n
    num = _NUMBER_TYPES
    # One tight loop with inline type tests (LVIS v1 train has 1.27M records); the
    # slow diagnosis only runs for the record that fails.
    for i, rec in enumerate(records):
        try:
            aid, iid, cid, bbox = rec["id"], rec["image_id"], rec["category_id"], rec["bbox"]
        except (KeyError, TypeError):
            _diagnose_annotation(rec, i, source)
        if not (
            type(aid) is int and type(iid) is int and type(cid) is int
            and type(bbox) is list and len(bbox) == 4
            and type(bbox[0]) in num and type(bbox[1]) in num
            and type(bbox[2]) in num and type(bbox[3]) in num
        ):
            _diagnose_annotation(rec, i, source)
        ids[i] = aid
        image_ids[i] = iid
        cat_ids[i] = cid
        boxes[i] = bbox
    ids_np = np.array(ids, dtype=np.int64)
    _check_unique(ids_np, "annotation", "annotations", source)
    return (
        ids_np,
        np.array(image_ids, dtype=np.int64),
        np.array(cat_ids, dtype=np.int64),
        np.array(boxes, dtype=np.float64).reshape(n, 4),
    )


def _diagnose_annotation(rec: Any, i: int, source: str) -> None:
    section = "annotations"
    if not isinstance(rec, dict):
        _fail(source, section, i, rec, f"must be an object, got {type(rec).__name__}")
    for key in ("id", "image_id", "category_id"):
        _require(source, section, i, rec, key, _is_int(rec.get(key)), "an integer")
    bbox = rec.get("bbox")
    ok = isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
    _require(source, section, i, rec, "bbox", ok, "4 numbers [x, y, width, height]")
    raise AssertionError("unreachable: the fast check and the diagnosis disagree")


def _check_box_values(boxes: np.ndarray, ann_ids: np.ndarray, source: str) -> None:
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        i = int(bad[0])
        raise AnnotationError(
            f"{source}: annotations[{i}] (id={int(ann_ids[i])}): 'bbox' has a non-finite "
            f"value {_fmt_box(boxes[i])}" + _and_more(len(bad) - 1, "annotation")
        )
    negative = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if negative.any():
        bad = np.flatnonzero(negative)
        i = int(bad[0])
        raise AnnotationError(
            f"{source}: annotations[{i}] (id={int(ann_ids[i])}): 'bbox' has a negative "
            f"width or height {_fmt_box(boxes[i])} (expected [x, y, width, height])"
            + _and_more(len(bad) - 1, "annotation")
        )


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in ``sorted_keys`` and whether each was found."""
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), np.int64), np.zeros(len(queries), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == queries


def _check_unique(ids: np.ndarray, what: str, section: str, source: str) -> None:
    if len(ids) < 2:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        first, second = int(order[dup[0]]), int(order[dup[0] + 1])
        raise AnnotationError(
            f"{source}: duplicate {what} id {int(ids[first])} "
            f"({section}[{first}] and {section}[{second}])"
        )


def _fmt_box(box: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) if not math.isfinite(v) else f"{v:g}" for v in box) + "]"


def _and_more(count: int, what: str) -> str:
    return f" (and {count} more such {what}s)" if count > 0 else ""


def _first_ids(ids: Sequence[int] | np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in ids[:_MAX_LISTED])
    return shown + (", ..." if len(ids) > _MAX_LISTED else "")
