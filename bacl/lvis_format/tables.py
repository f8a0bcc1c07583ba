"""The content of an LVIS-format file as column arrays, and the checks across records.

:func:`build_tables` turns the typed records of one file into :class:`LVISTables`
(one numpy array per field, no Python object per record) and checks what no single
record can show: ids are unique, annotations point at images and categories that
exist, boxes are finite with a non-negative size, and the keys a reader requires
are present. Every error names the file and the first offending record (section,
index, id) and says how many more there are.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from bacl.lvis_format.diagnosis import check_record, record_error
from bacl.lvis_format.errors import AnnotationError
from bacl.lvis_format.polygons import Polygons
from bacl.lvis_format.ragged import RaggedArray
from bacl.lvis_format.records import UNSET, Category, Image

# Keys a reader may require, beyond those every record needs.
IMAGE_HEIGHT = "images.height"
IMAGE_WIDTH = "images.width"
IMAGE_LOCATION = "images.location"  # file_name, or a coco_url ending in <folder>/<file>
IMAGE_NEG_CATEGORY_IDS = "images.neg_category_ids"
IMAGE_NOT_EXHAUSTIVE_CATEGORY_IDS = "images.not_exhaustive_category_ids"
ANNOTATION_AREA = "annotations.area"
CATEGORY_FREQUENCY = "categories.frequency"
REQUIRABLE_KEYS = (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_LOCATION, IMAGE_NEG_CATEGORY_IDS,
                   IMAGE_NOT_EXHAUSTIVE_CATEGORY_IDS, ANNOTATION_AREA, CATEGORY_FREQUENCY)

# COCO-2014 style names as found in LVIS v0.5 records ("COCO_val2014_000000397133.jpg").
_COCO2014_NAME = re.compile(r"^COCO_(?:train|val|test)2014_(\d{12}\.jpg)$")
# How many offending ids a message lists before it says "...".
MAX_LISTED = 5


@dataclass(frozen=True, kw_only=True)
class LVISTables:
    """One annotation file, column-wise. ``N`` images and ``M`` annotations in file
    order, ``K`` categories sorted by id.

    Attributes:
        source: the file the content came from (for messages).
        categories: ``K`` category records (dicts with every key of the file), by id.
        category_ids: ``(K,)`` int64, sorted, unique.
        image_ids: ``(N,)`` int64, unique.
        image_heights, image_widths: ``(N,)`` int64; 0 where the record has none.
        image_paths: ``N`` image paths relative to the image root (see
            :func:`image_relative_path`); None where the record gives no location.
        image_neg_category_ids, image_not_exhaustive_category_ids: ``N`` rows of
            category ids (empty where the record has none).
        ann_ids: ``(M,)`` int64, unique.
        ann_image_index: ``(M,)`` int64, the row of the annotation's image.
        ann_category_index: ``(M,)`` int64, the position of its category in
            ``category_ids``.
        ann_boxes_xywh: ``(M, 4)`` float64, ``[x, y, w, h]`` as in the file: finite,
            ``w, h >= 0``.
        ann_areas: ``(M,)`` float64; NaN where the record has no ``area``.
        ann_ignore: ``(M,)`` bool, lvis-api's ``ignore`` key.
        polygons: the segmentations, when they were asked for; else None.
    """

    source: str
    categories: list[dict[str, Any]]
    category_ids: np.ndarray
    image_ids: np.ndarray
    image_heights: np.ndarray
    image_widths: np.ndarray
    image_paths: list[str | None]
    image_neg_category_ids: RaggedArray
    image_not_exhaustive_category_ids: RaggedArray
    ann_ids: np.ndarray
    ann_image_index: np.ndarray
    ann_category_index: np.ndarray
    ann_boxes_xywh: np.ndarray
    ann_areas: np.ndarray
    ann_ignore: np.ndarray
    polygons: Polygons | None = None

    @property
    def ann_image_ids(self) -> np.ndarray:
        """``(M,)`` int64, each annotation's ``image_id``."""
        return self.image_ids[self.ann_image_index]

    @property
    def ann_category_ids(self) -> np.ndarray:
        """``(M,)`` int64, each annotation's ``category_id``."""
        return self.category_ids[self.ann_category_index]


def build_tables(*, images: Sequence[Image], annotations: Sequence[Any],
                 categories: Sequence[dict[str, Any]], source: str,
                 require: Collection[str] = ()) -> LVISTables:
    """Column arrays of decoded records, checked across records.

    Args:
        images, annotations: decoded :mod:`bacl.lvis_format.records` records.
        categories: the category dicts, checked here against
            :class:`~bacl.lvis_format.records.Category`.
        require: names from :data:`REQUIRABLE_KEYS` that must be in every record.
    """
    unknown = sorted(set(require) - set(REQUIRABLE_KEYS))
    if unknown:
        raise ValueError(f"unknown required keys {unknown}; choose from {REQUIRABLE_KEYS}")
    if not categories:
        raise AnnotationError(f"{source}: 'categories' is empty")
    cat_records = _checked_categories(categories, source)
    n, m = len(images), len(annotations)

    image_ids = np.fromiter(map(attrgetter("id"), images), np.int64, n)
    heights = _column(images, "height", 0, np.int64)
    widths = _column(images, "width", 0, np.int64)
    paths = [_relative_path(im.file_name, im.coco_url) for im in images]
    neg = _ragged_column(images, "neg_category_ids")
    not_exhaustive = _ragged_column(images, "not_exhaustive_category_ids")
    cat_ids_in_file = np.array([c.id for c in cat_records], dtype=np.int64)

    ann_ids = np.fromiter(map(attrgetter("id"), annotations), np.int64, m)
    ann_image_ids = np.fromiter(map(attrgetter("image_id"), annotations), np.int64, m)
    ann_cat_ids = np.fromiter(map(attrgetter("category_id"), annotations), np.int64, m)
    boxes = np.fromiter(itertools.chain.from_iterable(map(attrgetter("bbox"), annotations)),
                        np.float64, 4 * m).reshape(m, 4)
    areas = _column(annotations, "area", math.nan, np.float64)
    ignore = np.fromiter(map(bool, map(attrgetter("ignore"), annotations)), bool, m)

    present = {
        IMAGE_HEIGHT: lambda: heights > 0,
        IMAGE_WIDTH: lambda: widths > 0,
        IMAGE_LOCATION: lambda: np.fromiter((p is not None for p in paths), bool, n),
        IMAGE_NEG_CATEGORY_IDS: lambda: _given(images, "neg_category_ids"),
        IMAGE_NOT_EXHAUSTIVE_CATEGORY_IDS: lambda: _given(images, "not_exhaustive_category_ids"),
        ANNOTATION_AREA: lambda: _given(annotations, "area"),
        CATEGORY_FREQUENCY: lambda: _given(cat_records, "frequency"),
    }
    record_ids = {"images": image_ids, "annotations": ann_ids, "categories": cat_ids_in_file}
    for key in require:
        section, field = key.split(".")
        missing = np.flatnonzero(~present[key]())
        if len(missing):
            i = int(missing[0])
            problem = (f"missing required key '{field}'" if key != IMAGE_LOCATION else
                       "needs 'file_name' or a 'coco_url' ending in <folder>/<file> to "
                       "locate the image file")
            raise record_error(source, section, i, int(record_ids[section][i]),
                               problem + and_more(len(missing) - 1, section))

    image_order = unique_ids_order(image_ids, "image", "images", source)
    cat_order = unique_ids_order(cat_ids_in_file, "category", "categories", source)
    unique_ids_order(ann_ids, "annotation", "annotations", source)
    category_ids = cat_ids_in_file[cat_order]

    image_pos = _references(image_ids[image_order], ann_image_ids, ann_ids, "image", source)
    cat_index = _references(category_ids, ann_cat_ids, ann_ids, "category", source)
    _check_box_values(boxes, ann_ids, source)
    return LVISTables(
        source=source,
        categories=[dict(categories[i]) for i in cat_order],
        category_ids=category_ids,
        image_ids=image_ids,
        image_heights=heights,
        image_widths=widths,
        image_paths=paths,
        image_neg_category_ids=neg,
        image_not_exhaustive_category_ids=not_exhaustive,
        ann_ids=ann_ids,
        ann_image_index=image_order[image_pos],
        ann_category_index=cat_index,
        ann_boxes_xywh=boxes,
        ann_areas=areas,
        ann_ignore=ignore,
    )


def index_in(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position ``(N,)`` of each of ``ids`` ``(N,)`` in ``sorted_ids``; -1 where absent.

    ``sorted_ids`` must be sorted and unique (as :func:`unique_ids_order` leaves them).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    if lo >= 0 and hi < (1 << 22):
        # Small non-negative ids (the usual case): a lookup table beats a binary search.
        table = np.full(hi + 2, -1, dtype=np.int64)
        table[sorted_ids] = np.arange(len(sorted_ids))
        return table[np.clip(ids, -1, hi + 1)]
    idx = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[idx] == ids, idx, -1)


def unique_ids_order(ids: np.ndarray, what: str, section: str, source: str) -> np.ndarray:
    """The stable order ``(N,)`` that sorts ``ids`` ``(N,)``; duplicates raise, naming the
    first two records that share an id (lvis-api would silently keep the last)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        first, second = int(order[dup[0]]), int(order[dup[0] + 1])
        raise AnnotationError(
            f"{source}: duplicate {what} id {int(ids[first])} "
            f"({section}[{first}] and {section}[{second}])"
        )
    return order


def image_relative_path(record: Any) -> str | None:
    """Where an image record (a dict) puts its file, relative to the image root.

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
    return _relative_path(record.get("file_name"), record.get("coco_url"))


def and_more(count: int, plural: str) -> str:
    """`` (and 3 more such annotations)``, or nothing when ``count`` is 0."""
    return f" (and {count} more such {plural})" if count > 0 else ""


def first_ids(ids: Sequence[int] | np.ndarray) -> str:
    """The first :data:`MAX_LISTED` of ``ids``, then "..." if there are more."""
    shown = ", ".join(str(int(v)) for v in ids[:MAX_LISTED])
    return shown + (", ..." if len(ids) > MAX_LISTED else "")


# --------------------------------------------------------------------------- helpers


def _relative_path(file_name: Any, coco_url: Any) -> str | None:
    coco2014 = _COCO2014_NAME.match(file_name) if isinstance(file_name, str) else None
    if isinstance(file_name, str) and file_name and coco2014 is None:
        return file_name
    if isinstance(coco_url, str) and coco_url:
        # e.g. "http://images.cocodataset.org/val2017/000000397133.jpg"
        parts = coco_url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 2)
        if len(parts) == 3 and parts[1] and parts[2] and not parts[0].endswith(":/"):
            return f"{parts[1]}/{parts[2]}"
    if coco2014 is not None:
        return coco2014.group(1)
    return None


def _checked_categories(categories: Sequence[dict[str, Any]], source: str) -> list[Category]:
    try:
        return msgspec.convert(categories, list[Category])
    except msgspec.ValidationError as err:
        match = re.search(r"at `\$\[(\d+)\]", str(err))
        if match:
            i = int(match.group(1))
            check_record("categories", i, categories[i], source)
        raise AnnotationError(f"{source}: 'categories' is not valid: {err}") from err


def _column(records: Sequence[Any], field: str, absent: Any, dtype: type) -> np.ndarray:
    """``(len(records),)`` of ``field``, ``absent`` where it is unset."""
    values = map(attrgetter(field), records)
    return np.fromiter((absent if v is UNSET else v for v in values), dtype, len(records))


def _given(records: Sequence[Any], field: str) -> np.ndarray:
    return np.fromiter((v is not UNSET for v in map(attrgetter(field), records)), bool,
                       len(records))


def _ragged_column(records: Sequence[Any], field: str) -> RaggedArray:
    lists = [() if v is UNSET else v for v in map(attrgetter(field), records)]
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    values = np.fromiter(itertools.chain.from_iterable(lists), np.int64, int(lengths.sum()))
    return RaggedArray.from_lengths(values, lengths)


def _references(sorted_ids: np.ndarray, ids: np.ndarray, ann_ids: np.ndarray, what: str,
                source: str) -> np.ndarray:
    """Position of each annotation's ``{what}_id`` in ``sorted_ids``; unknown ids raise."""
    pos = index_in(sorted_ids, ids)
    bad = np.flatnonzero(pos < 0)
    if len(bad):
        i = int(bad[0])
        section = "images" if what == "image" else "categories"
        raise record_error(
            source, "annotations", i, int(ann_ids[i]),
            f"{what}_id {int(ids[i])} does not exist in '{section}'"
            + and_more(len(bad) - 1, "annotations"))
    return pos


def _check_box_values(boxes: np.ndarray, ann_ids: np.ndarray, source: str) -> None:
    finite = np.isfinite(boxes).all(axis=1)
    bad = np.flatnonzero(~finite)
    if len(bad):
        i = int(bad[0])
        raise record_error(source, "annotations", i, int(ann_ids[i]),
                           f"'bbox' has a non-finite value {_fmt_box(boxes[i])}"
                           + and_more(len(bad) - 1, "annotations"))
    bad = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if len(bad):
        i = int(bad[0])
        raise record_error(source, "annotations", i, int(ann_ids[i]),
                           f"'bbox' has a negative width or height {_fmt_box(boxes[i])} "
                           "(expected [x, y, width, height])"
                           + and_more(len(bad) - 1, "annotations"))


def _fmt_box(box: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) if not math.isfinite(v) else f"{v:g}"
                           for v in box) + "]"
