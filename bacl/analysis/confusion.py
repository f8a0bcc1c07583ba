"""Confusion between classes, and how much of it crosses frequency bins.

Two sources, compared through the same bin-level view (:func:`bin_flow`):

- the *training* confusion matrix FCBL keeps (``cm[a, b]``: mean foreground-softmax
  probability of class ``b`` on positive RoIs of class ``a``), read through FCBL itself
  from a classifier-stage checkpoint (:mod:`.trained_stage`);
- a *detection* confusion on the validation split that any run has
  (:func:`detection_confusion`): each ground-truth box goes to the class of the
  best-scored detection overlapping it, or to "missed".

Rows are ground-truth classes (in category-id order), columns predicted classes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import AnalysisInputError, MissingStatisticsError
from .trained_stage import LOSS_PREFIX, fcbl_from_weights, load_trained_stage

BINS = ("r", "c", "f")


def training_confusion(model_state: Mapping[str, Any], *, source: str = "weights") -> tuple[np.ndarray, np.ndarray]:
    """FCBL's statistics in a model ``state_dict``, as FCBL itself normalises them:
    ``(cm (C, C), num_gt (C,))`` float64 (:attr:`bacl.losses.fcbl.FCBL.cm`; a row of zeros
    for a class never seen). Raises :class:`~.errors.MissingStatisticsError` when the
    weights hold no FCBL statistics."""
    fcbl = fcbl_from_weights(model_state, {}, source=source)  # cm does not depend on the settings
    if fcbl is None:
        raise MissingStatisticsError(f"{source}: no FCBL statistics ({LOSS_PREFIX}cm_num): "
                                     "the run did not train with loss fcbl")
    return fcbl.cm.numpy(), fcbl.num_gt.numpy()


def load_training_confusion(checkpoint: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`training_confusion` of a checkpoint file (``model_final.pt`` or ``last.pt``);
    errors name the file."""
    fcbl = load_trained_stage(checkpoint).require_fcbl()
    return fcbl.cm.numpy(), fcbl.num_gt.numpy()


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a (G, 4)`` and ``b (D, 4)``, both ``[x, y, w, h]``: ``(G, D)``."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def detection_confusion(annotations: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *,
                        iou_threshold: float = 0.5, min_score: float = 0.0) -> np.ndarray:
    """Counts ``(C, C + 1)`` int64: row = a ground-truth box's class, column = the class of
    the best-scored detection (score >= ``min_score``) with IoU >= ``iou_threshold`` to it,
    or ``C`` ("missed") when there is none. Classes in category-id order.

    Args:
        annotations: an LVIS annotation dict (``categories``, ``annotations`` with
            ``bbox [x, y, w, h]``).
        detections: LVIS results records ``{image_id, category_id, bbox, score}``.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    cat_ids = sorted(int(c["id"]) for c in annotations["categories"])
    index = {c: k for k, c in enumerate(cat_ids)}
    num_classes = len(cat_ids)
    counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    dets_by_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for det in detections:
        if float(det["score"]) >= min_score:
            dets_by_image[int(det["image_id"])].append(det)
    gts_by_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ann in annotations["annotations"]:
        gts_by_image[int(ann["image_id"])].append(ann)

    for image_id, gts in gts_by_image.items():
        gt_labels = np.array([index[int(g["category_id"])] for g in gts])
        dets = dets_by_image.get(image_id, [])
        if not dets:
            np.add.at(counts, (gt_labels, num_classes), 1)
            continue
        unknown = {int(d["category_id"]) for d in dets} - index.keys()
        if unknown:
            raise AnalysisInputError(f"detections on image {image_id} have unknown category ids {sorted(unknown)[:5]}")
        gt_boxes = np.array([g["bbox"] for g in gts], dtype=np.float64)
        det_boxes = np.array([d["bbox"] for d in dets], dtype=np.float64)
        scores = np.array([float(d["score"]) for d in dets])
        det_labels = np.array([index[int(d["category_id"])] for d in dets])
        overlapping = _iou_xywh(gt_boxes, det_boxes) >= iou_threshold
        ranked = np.where(overlapping, scores[None], -np.inf)
        best = ranked.argmax(axis=1)
        predicted = np.where(overlapping.any(axis=1), det_labels[best], num_classes)
        np.add.at(counts, (gt_labels, predicted), 1)
    return counts


def row_rates(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of zeros stay zero), float64."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def bin_flow(rates: np.ndarray, frequency: Sequence[str], *, valid: np.ndarray | None = None) -> np.ndarray:
    """Mass moved between frequency bins: ``(3, 3)`` for a ``(C, C)`` ``rates``, ``(3, 4)``
    for ``(C, C + 1)`` (the last column, "missed", kept apart).

    ``flow[i, j]`` is the mean, over the classes of bin ``BINS[i]`` with a ``valid`` row
    (default: a row with positive mass), of the mass their rows put on the classes of bin
    ``BINS[j]``. With rows summing to 1 each row of the flow sums to 1. A bin without a
    valid class gives a row of NaN. ``frequency`` holds ``'r'/'c'/'f'`` per class.
    """
    rates = np.asarray(rates, dtype=np.float64)
    num_classes = len(frequency)
    if rates.ndim != 2 or rates.shape[0] != num_classes or rates.shape[1] not in (num_classes, num_classes + 1):
        raise ValueError(f"rates must be ({num_classes}, {num_classes}) or ({num_classes}, {num_classes + 1}), "
                         f"got {rates.shape}")
    freq = np.array(list(frequency))
    if valid is None:
        valid = rates.sum(axis=1) > 0
    has_missed = rates.shape[1] == num_classes + 1
    flow = np.full((len(BINS), len(BINS) + has_missed), np.nan)
    for i, src in enumerate(BINS):
        rows = rates[(freq == src) & valid]
        if len(rows) == 0:
            continue
        for j, dst in enumerate(BINS):
            flow[i, j] = rows[:, :num_classes][:, freq == dst].sum(axis=1).mean()
        if has_missed:
            flow[i, -1] = rows[:, -1].mean()
    return flow


def head_tail_mass(flow: np.ndarray) -> dict[str, float]:
    """From a :func:`bin_flow`: the mass frequent classes put on rare ones and the reverse,
    and on the other foreground bins overall."""
    r, c, f = BINS.index("r"), BINS.index("c"), BINS.index("f")
    return {"frequent->rare": float(flow[f, r]), "rare->frequent": float(flow[r, f]),
            "frequent->common": float(flow[f, c]), "common->frequent": float(flow[c, f]),
            "rare->rare": float(flow[r, r])}


def confused_pair_indices(rates: np.ndarray, num_classes: int, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest positive off-diagonal entries of ``rates (C, C)`` or ``(C, C + 1)``
    among the foreground columns: ``(true, predicted, rate)`` with class indices, largest
    first, ties in row-major order."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 2 or rates.shape[0] != num_classes or rates.shape[1] not in (num_classes, num_classes + 1):
        raise ValueError(f"rates must be ({num_classes}, {num_classes}) or ({num_classes}, {num_classes + 1}), "
                         f"got {rates.shape}")
    fg = rates[:, :num_classes].copy()
    np.fill_diagonal(fg, -np.inf)
    flat = fg.ravel()
    candidates = np.flatnonzero(flat > 0)  # row-major order
    values = flat[candidates]
    if 0 < k < values.size:  # linear-time cut at the k-th largest value; entries equal to it all stay
        keep = values >= np.partition(values, values.size - k)[values.size - k]
        candidates, values = candidates[keep], values[keep]
    # a stable sort keeps row-major order among equal rates
    order = candidates[np.argsort(-values, kind="stable")][:k]
    return [(int(i) // num_classes, int(i) % num_classes, float(flat[i])) for i in order]


def most_confused_pairs(rates: np.ndarray, names: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal entries among the foreground columns:
    ``{true, predicted, rate}`` with class names, largest first."""
    return [{"true": names[a], "predicted": names[b], "rate": rate}
            for a, b, rate in confused_pair_indices(rates, len(names), max(k, 0))]


def confused_classes(rates: np.ndarray, *, num_pairs: int = 30) -> list[int]:
    """The classes (indices) of the ``num_pairs`` most confused pairs of ``rates (C, C)`` or
    ``(C, C + 1)`` (:func:`confused_pair_indices`), in order of first appearance: a
    bounded set of rows and columns (at most ``2 * num_pairs``) for a per-class figure."""
    return pair_classes(confused_pair_indices(rates, np.shape(rates)[0], num_pairs))


def pair_classes(pairs: Sequence[tuple[int, int, float]]) -> list[int]:
    """The classes of :func:`confused_pair_indices` pairs, in order of first appearance."""
    return list(dict.fromkeys(c for a, b, _ in pairs for c in (a, b)))
