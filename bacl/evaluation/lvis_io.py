"""Reading LVIS ground truth and LVIS results into flat numpy arrays.

JSON files are decoded with ``msgspec`` into typed records: it validates the schema
while parsing (errors carry the JSON path, e.g. ``$[1234].score``), skips fields the
box evaluator does not need (segmentations) without building Python objects for
them, and is several times faster than ``json.load`` on a 1.5M-record results file.
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Union

import msgspec
import numpy as np

PathLike = Union[str, os.PathLike]
FREQUENCIES = ("r", "c", "f")
DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")


class _Image(msgspec.Struct, kw_only=True, gc=False):
    id: int
    neg_category_ids: list[int]
    not_exhaustive_category_ids: list[int]


class _Annotation(msgspec.Struct, kw_only=True, gc=False):
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float
    # lvis-api honours an "ignore" key when present (any truthy value).
    ignore: Any = 0


class _Category(msgspec.Struct, kw_only=True, gc=False):
    id: int
    frequency: str
    name: str = ""
    image_count: Union[int, None] = None


class _GroundTruthFile(msgspec.Struct, kw_only=True):
    images: list[_Image]
    annotations: list[_Annotation]
    categories: list[_Category]


class _Detection(msgspec.Struct, kw_only=True, gc=False):
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class GroundTruth:
    """An LVIS ground-truth set as arrays. ``I`` images, ``K`` categories, ``M`` boxes.

    Images and categories are sorted by id (the order lvis-api evaluates them in);
    annotations keep their file order. ``neg_pairs`` / ``not_exhaustive_pairs`` hold
    ``image_index * K + category_index`` keys for the images' federated lists.
    """

    image_ids: np.ndarray  # (I,) int64, sorted, unique
    category_ids: np.ndarray  # (K,) int64, sorted, unique
    categories: list[dict[str, Any]]  # (K,) id, name, frequency, image_count
    frequency_index: np.ndarray  # (K,) int64, position of the frequency in "rcf"
    ann_ids: np.ndarray  # (M,) int64
    ann_image_ids: np.ndarray  # (M,) int64
    ann_category_ids: np.ndarray  # (M,) int64
    ann_boxes: np.ndarray  # (M, 4) float64, xywh
    ann_areas: np.ndarray  # (M,) float64, the file's "area" (mask area in LVIS)
    ann_ignore: np.ndarray  # (M,) bool
    neg_pairs: np.ndarray  # (P,) int64, sorted unique keys
    not_exhaustive_pairs: np.ndarray  # (Q,) int64, sorted unique keys


@dataclass(frozen=True)
class Detections:
    """``N`` detections in input order: the order decides ties in score."""

    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float64, xywh
    scores: np.ndarray  # (N,) float64


def _decode_file(path: PathLike, schema: Any, what: str) -> Any:
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=schema)
    except msgspec.DecodeError as err:
        # ValidationError is a DecodeError: both cases name the file and the JSON path.
        raise ValueError(f"{os.fspath(path)}: not a valid {what} file: {err}") from err


def load_ground_truth(annotations: PathLike | Mapping[str, Any]) -> GroundTruth:
    """Read an LVIS annotation file (path) or an already-loaded LVIS dict.

    A dict must hold plain JSON types (what ``json.load`` returns). Raises
    ``ValueError`` naming the file (or "annotations") and the JSON path of the
    first problem, and on duplicate image, category or annotation ids.
    """
    if isinstance(annotations, Mapping):
        source = "annotations"
        try:
            raw = msgspec.convert(annotations, _GroundTruthFile)
        except msgspec.ValidationError as err:
            raise ValueError(f"annotations dict is not valid LVIS: {err}") from err
    else:
        source = os.fspath(annotations)
        raw = _decode_file(annotations, _GroundTruthFile, "LVIS annotation")
    return _ground_truth_arrays(raw, source)


def _unique_sorted_ids(ids: list[int] | np.ndarray, what: str, source: str) -> np.ndarray:
    """Sorted ids (N,); lvis-api would silently keep only the last of duplicates, we refuse."""
    arr = np.sort(np.asarray(ids, dtype=np.int64))
    dup = arr[1:][arr[1:] == arr[:-1]]
    if len(dup):
        raise ValueError(f"{source}: duplicate {what} id {int(dup[0])}")
    return arr


def _category_records(cats: list[_Category], order: np.ndarray,
                      source: str) -> list[dict[str, Any]]:
    records = []
    for i in order:
        cat = cats[i]
        if cat.frequency not in FREQUENCIES:
            raise ValueError(f"{source}: category {cat.id} has frequency {cat.frequency!r}, "
                             f"expected one of {FREQUENCIES}")
        records.append({"category_id": cat.id, "name": cat.name, "frequency": cat.frequency,
                        "image_count": cat.image_count})
    return records


def _pair_keys(images: list[_Image], field: str, image_ids: np.ndarray,
               category_ids: np.ndarray) -> np.ndarray:
    """Sorted unique ``image_index * K + category_index`` for one per-image id list.

    Category ids not in the category list can never match a (validated) detection,
    so they are dropped.
    """
    lists = [getattr(img, field) for img in images]
    img = np.repeat(np.asarray([im.id for im in images], dtype=np.int64),
                    [len(v) for v in lists])
    cat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=len(img))
    img_idx, cat_idx = index_in(image_ids, img), index_in(category_ids, cat)
    ok = (img_idx >= 0) & (cat_idx >= 0)
    return np.unique(img_idx[ok] * len(category_ids) + cat_idx[ok])


def index_in(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position ``(N,)`` of each of ``ids`` ``(N,)`` in ``sorted_ids``; -1 where absent."""
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


def _ground_truth_arrays(raw: _GroundTruthFile, source: str) -> GroundTruth:
    image_ids = _unique_sorted_ids([im.id for im in raw.images], "image", source)
    cat_ids_in_file = [c.id for c in raw.categories]
    category_ids = _unique_sorted_ids(cat_ids_in_file, "category", source)
    categories = _category_records(raw.categories,
                                   np.argsort(np.asarray(cat_ids_in_file, np.int64), kind="stable"),
                                   source)
    anns = raw.annotations
    m = len(anns)
    ann_ids = np.fromiter(map(attrgetter("id"), anns), np.int64, m)
    _unique_sorted_ids(ann_ids, "annotation", source)
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        categories=categories,
        frequency_index=np.array([FREQUENCIES.index(c["frequency"]) for c in categories],
                                 dtype=np.int64),
        ann_ids=ann_ids,
        ann_image_ids=np.fromiter(map(attrgetter("image_id"), anns), np.int64, m),
        ann_category_ids=np.fromiter(map(attrgetter("category_id"), anns), np.int64, m),
        ann_boxes=np.fromiter(itertools.chain.from_iterable(map(attrgetter("bbox"), anns)),
                              np.float64, 4 * m).reshape(m, 4),
        ann_areas=np.fromiter(map(attrgetter("area"), anns), np.float64, m),
        ann_ignore=np.fromiter((bool(a.ignore) for a in anns), bool, m),
        neg_pairs=_pair_keys(raw.images, "neg_category_ids", image_ids, category_ids),
        not_exhaustive_pairs=_pair_keys(raw.images, "not_exhaustive_category_ids",
                                        image_ids, category_ids),
    )


def load_detections(detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]
                    ) -> Detections:
    """Read LVIS results from a json path, a list of dicts, or a dict of arrays.

    The dict-of-arrays form, for callers that already hold arrays, is
    ``{"image_id": (N,), "category_id": (N,), "bbox": (N, 4) xywh, "score": (N,)}``.
    Raises ``ValueError`` naming the file / detection index and the bad key or value.
    Non-finite boxes or scores are rejected (lvis-api would sort NaN scores arbitrarily).
    """
    if isinstance(detections, Mapping):
        dets = _detections_from_arrays(detections)
        source = "detections"
    elif isinstance(detections, (str, os.PathLike)):
        dets = _detections_from_file(detections)
        source = os.fspath(detections)
    elif isinstance(detections, Sequence):
        dets = _detections_from_dicts(detections)
        source = "detections"
    else:
        raise TypeError(f"detections must be a path, a list of dicts or a dict of arrays, "
                        f"got {type(detections).__name__}")
    _check_finite(dets, source)
    return dets


def _detections_from_file(path: PathLike) -> Detections:
    recs = _decode_file(path, list[_Detection], "LVIS results")
    n = len(recs)
    return Detections(
        image_ids=np.fromiter(map(attrgetter("image_id"), recs), np.int64, n),
        category_ids=np.fromiter(map(attrgetter("category_id"), recs), np.int64, n),
        boxes=np.fromiter(itertools.chain.from_iterable(map(attrgetter("bbox"), recs)),
                          np.float64, 4 * n).reshape(n, 4),
        scores=np.fromiter(map(attrgetter("score"), recs), np.float64, n),
    )


def _detections_from_dicts(dets: Sequence[Mapping[str, Any]]) -> Detections:
    n = len(dets)
    if n == 0:
        return _empty_detections()
    try:
        cols = {key: [d[key] for d in dets] for key in DETECTION_KEYS}
        image_ids, category_ids = np.asarray(cols["image_id"]), np.asarray(cols["category_id"])
        boxes, scores = np.asarray(cols["bbox"]), np.asarray(cols["score"])
    except (KeyError, TypeError, ValueError):
        image_ids = None
    # np.asarray silently accepts floats or strings; only exact numeric kinds pass.
    if (image_ids is None or image_ids.dtype.kind not in "iu" or image_ids.shape != (n,)
            or category_ids.dtype.kind not in "iu" or category_ids.shape != (n,)
            or boxes.dtype.kind not in "iuf" or boxes.shape != (n, 4)
            or scores.dtype.kind not in "iuf" or scores.shape != (n,)):
        for i, det in enumerate(dets):
            _check_detection_record(i, det)
        raise ValueError("detections: cannot be read as LVIS results")
    return Detections(image_ids=image_ids.astype(np.int64),
                      category_ids=category_ids.astype(np.int64),
                      boxes=boxes.astype(np.float64), scores=scores.astype(np.float64))


def _empty_detections() -> Detections:
    return Detections(image_ids=np.zeros(0, np.int64), category_ids=np.zeros(0, np.int64),
                      boxes=np.zeros((0, 4), np.float64), scores=np.zeros(0, np.float64))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_detection_record(i: int, det: Any) -> None:
    """Raise ``ValueError`` naming ``detections[i]`` and its problem, if it has one."""
    if not isinstance(det, Mapping):
        raise ValueError(f"detections[{i}] is a {type(det).__name__}, expected a dict")
    for key in DETECTION_KEYS:
        if key not in det:
            raise ValueError(f"detections[{i}] is missing the key {key!r}")
    for key in ("image_id", "category_id"):
        if not _is_int(det[key]):
            raise ValueError(f"detections[{i}][{key!r}] must be an integer, got {det[key]!r}")
    box = det["bbox"]
    if (isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4
            or not all(_is_real(v) for v in box)):
        raise ValueError(f"detections[{i}]['bbox'] must be 4 numbers [x, y, w, h], got {box!r}")
    if not _is_real(det["score"]):
        raise ValueError(f"detections[{i}]['score'] must be a number, got {det['score']!r}")


def _detections_from_arrays(arrays: Mapping[str, Any]) -> Detections:
    missing = [k for k in DETECTION_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"detections dict of arrays is missing {missing}")
    image_ids, category_ids = np.asarray(arrays["image_id"]), np.asarray(arrays["category_id"])
    boxes, scores = np.asarray(arrays["bbox"]), np.asarray(arrays["score"])
    n = len(scores.reshape(-1))
    for key, arr in (("image_id", image_ids), ("category_id", category_ids)):
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise ValueError(f"detections[{key!r}] must be an integer array of shape ({n},), "
                             f"got {arr.dtype} {arr.shape}")
    if boxes.dtype.kind not in "iuf" or boxes.shape != (n, 4):
        raise ValueError(f"detections['bbox'] must be a numeric array of shape ({n}, 4), "
                         f"got {boxes.dtype} {boxes.shape}")
    if scores.dtype.kind not in "iuf" or scores.ndim != 1:
        raise ValueError(f"detections['score'] must be a numeric array of shape (N,), "
                         f"got {scores.dtype} {scores.shape}")
    return Detections(image_ids=image_ids.astype(np.int64),
                      category_ids=category_ids.astype(np.int64),
                      boxes=boxes.astype(np.float64), scores=scores.astype(np.float64))


def _check_finite(dets: Detections, source: str) -> None:
    bad = ~(np.isfinite(dets.scores) & np.isfinite(dets.boxes).all(axis=1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: detection {i} has a non-finite bbox or score "
                         f"(bbox {dets.boxes[i].tolist()}, score {dets.scores[i]})")
