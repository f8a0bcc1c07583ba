"""Reading LVIS ground truth and LVIS results into flat numpy arrays.

Ground truth is read by :func:`bacl.lvis_format.read_lvis`, the one reader of the
LVIS format (the training dataset uses it too), with the keys LVIS evaluation needs
required in every record; its errors name the file, the record and the key. Results
files are decoded with ``msgspec`` into typed records: it validates them while
parsing (errors carry the JSON path, e.g. ``$[1234].score``) and is several times
faster than ``json.load`` on a 1.5M-record results file. Nothing here imports torch.
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Union

import msgspec
import numpy as np

from bacl.errors import BaclError
from bacl.lvis_format import EVALUATION_KEYS, FREQUENCIES, LVISTables, index_in, read_lvis
from bacl.lvis_format.json_text import read_json_bytes, syntax_error_message

__all__ = ["DETECTION_KEYS", "Detections", "DetectionsError", "FREQUENCIES", "GroundTruth",
           "PathLike", "index_in", "load_detections", "load_ground_truth"]

PathLike = Union[str, os.PathLike]
DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")


class DetectionsError(BaclError, ValueError):
    """Detections (a results file, list or arrays) that cannot be evaluated."""


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
    categories: list[dict[str, Any]]  # (K,) category_id, name, frequency, image_count
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


def load_ground_truth(annotations: PathLike | Mapping[str, Any] | GroundTruth) -> GroundTruth:
    """Read an LVIS annotation file (path) or an already-loaded LVIS dict; a
    :class:`GroundTruth` is returned as it is (read once, evaluated several times).

    A dict must hold plain JSON types (what ``json.load`` returns). Raises
    :class:`bacl.lvis_format.AnnotationError` (a ``ValueError``) naming the file (or
    "annotations") and the record and key at fault: malformed JSON, a record of the
    wrong type or without a key evaluation needs (``neg_category_ids``,
    ``not_exhaustive_category_ids``, ``area``, ``frequency``), duplicate ids, an
    annotation on an unknown image or category, a non-finite box.
    """
    if isinstance(annotations, GroundTruth):
        return annotations
    return _ground_truth_arrays(read_lvis(annotations, require=EVALUATION_KEYS))


def _ground_truth_arrays(tables: LVISTables) -> GroundTruth:
    image_order = np.argsort(tables.image_ids, kind="stable")
    sorted_position = np.empty_like(image_order)
    sorted_position[image_order] = np.arange(len(image_order))
    num_cats = len(tables.category_ids)

    def pair_keys(lists: Any) -> np.ndarray:
        # Category ids not in the category list can never match a (validated)
        # detection, so they are dropped.
        cat_idx = index_in(tables.category_ids, lists.values)
        img_idx = sorted_position[lists.row_index()]
        ok = cat_idx >= 0
        return np.unique(img_idx[ok] * num_cats + cat_idx[ok])

    categories = [{"category_id": c["id"], "name": c["name"], "frequency": c["frequency"],
                   "image_count": c.get("image_count")} for c in tables.categories]
    return GroundTruth(
        image_ids=tables.image_ids[image_order],
        category_ids=tables.category_ids,
        categories=categories,
        frequency_index=np.array([FREQUENCIES.index(c["frequency"]) for c in categories],
                                 dtype=np.int64),
        ann_ids=tables.ann_ids,
        ann_image_ids=tables.ann_image_ids,
        ann_category_ids=tables.ann_category_ids,
        ann_boxes=tables.ann_boxes_xywh,
        ann_areas=tables.ann_areas,
        ann_ignore=tables.ann_ignore,
        neg_pairs=pair_keys(tables.image_neg_category_ids),
        not_exhaustive_pairs=pair_keys(tables.image_not_exhaustive_category_ids),
    )


def load_detections(detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]
                    ) -> Detections:
    """Read LVIS results from a json path, a list of dicts, or a dict of arrays.

    The dict-of-arrays form, for callers that already hold arrays, is
    ``{"image_id": (N,), "category_id": (N,), "bbox": (N, 4) xywh, "score": (N,)}``.
    Raises :class:`DetectionsError` (a ``ValueError``) naming the file / detection index
    and the bad key or value.
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
    source = os.fspath(path)
    data = read_json_bytes(path, what="results file")
    try:
        recs = msgspec.json.decode(data, type=list[_Detection])
    except msgspec.ValidationError as err:
        # The JSON path names the detection and the key, e.g. "$[4]".
        raise DetectionsError(f"{source}: not a valid LVIS results file: {err}") from err
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise DetectionsError(syntax_error_message(data, err, source=source,
                                                   expected="an LVIS results JSON")) from err
    del data
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
        raise DetectionsError("detections: cannot be read as LVIS results")
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
    """Raise :class:`DetectionsError` naming ``detections[i]`` and its problem, if any."""
    if not isinstance(det, Mapping):
        raise DetectionsError(f"detections[{i}] is a {type(det).__name__}, expected a dict")
    for key in DETECTION_KEYS:
        if key not in det:
            raise DetectionsError(f"detections[{i}] is missing the key {key!r}")
    for key in ("image_id", "category_id"):
        if not _is_int(det[key]):
            raise DetectionsError(f"detections[{i}][{key!r}] must be an integer, got {det[key]!r}")
    box = det["bbox"]
    if (isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4
            or not all(_is_real(v) for v in box)):
        raise DetectionsError(f"detections[{i}]['bbox'] must be 4 numbers [x, y, w, h], got {box!r}")
    if not _is_real(det["score"]):
        raise DetectionsError(f"detections[{i}]['score'] must be a number, got {det['score']!r}")


def _detections_from_arrays(arrays: Mapping[str, Any]) -> Detections:
    missing = [k for k in DETECTION_KEYS if k not in arrays]
    if missing:
        raise DetectionsError(f"detections dict of arrays is missing {missing}")
    image_ids, category_ids = np.asarray(arrays["image_id"]), np.asarray(arrays["category_id"])
    boxes, scores = np.asarray(arrays["bbox"]), np.asarray(arrays["score"])
    n = len(scores.reshape(-1))
    for key, arr in (("image_id", image_ids), ("category_id", category_ids)):
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise DetectionsError(f"detections[{key!r}] must be an integer array of shape ({n},), "
                             f"got {arr.dtype} {arr.shape}")
    if boxes.dtype.kind not in "iuf" or boxes.shape != (n, 4):
        raise DetectionsError(f"detections['bbox'] must be a numeric array of shape ({n}, 4), "
                         f"got {boxes.dtype} {boxes.shape}")
    if scores.dtype.kind not in "iuf" or scores.ndim != 1:
        raise DetectionsError(f"detections['score'] must be a numeric array of shape (N,), "
                         f"got {scores.dtype} {scores.shape}")
    return Detections(image_ids=image_ids.astype(np.int64),
                      category_ids=category_ids.astype(np.int64),
                      boxes=boxes.astype(np.float64), scores=scores.astype(np.float64))


def _check_finite(dets: Detections, source: str) -> None:
    bad = ~(np.isfinite(dets.scores) & np.isfinite(dets.boxes).all(axis=1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DetectionsError(f"{source}: detection {i} has a non-finite bbox or score "
                         f"(bbox {dets.boxes[i].tolist()}, score {dets.scores[i]})")
