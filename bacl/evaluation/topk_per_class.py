"""Collect, during inference, each class's ``k`` best-scored detections over a dataset.

Fixed AP and pooled AP (``fixed_ap.py``, ``pooled_ap.py``) evaluate up to K
detections per class over the whole evaluation set (LVIS: 10,000) and no per-image
cap, so inference must supply them: far more than a 300-per-image detector keeps
for the classes it rarely predicts, far fewer than all it could output.
:class:`TopKPerClass` keeps, per class, the ``k`` best seen so far in bounded memory:
detections are appended to a buffer that is merged into the kept set in chunks.

The selection rule is the evaluation's: per class, by score, ties to the detection
added first (Python's stable ``sorted(..., reverse=True)[:k]`` over the detections in
the order they were produced, as large-vocab-devil's ``lvdevil/infer_topk.py`` and its
evaluation scripts do). :meth:`TopKPerClass.merge` gives ties to ``self``, so merging
the processes' accumulators in rank order equals gathering their detections in rank
order and selecting once.

How ``infer_topk`` gets the candidates per image (detectron2 Faster / Mask R-CNN; our
inference should be configured the same way):

- the per-image limit is off (``fast_rcnn_inference(..., topk_per_image=-1)``);
- per-class NMS at the model's test threshold (0.5) over all proposals (1,000 per
  image), class-specific boxes;
- a class's scores below a per-class threshold are dropped before NMS: the score of
  the ``ceil(1.1 k)``-th best detection of that class collected so far (the 10 %
  margin absorbs differences between their two inference passes), never below
  ``MIN_SCORE = 1e-7``. Dropping boxes that score lower than the ``k``-th best seen so
  far before NMS changes nothing: a box can only be suppressed by a better-scored one.
  :meth:`TopKPerClass.min_scores` gives that threshold (without the margin, which a
  single pass does not need).

This module only needs numpy: the caller converts tensors (``.cpu().numpy()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bacl.evaluation.lvis_eval import EvaluationError, check_positive_int, top_scored_per_group

#: ``infer_topk``'s score floor (``TEST.TOPK_CAT.MIN_SCORE``).
MIN_SCORE = 1e-7


class TopKPerClass:
    """Per class, the ``k`` best-scored detections added so far.

    Args:
        num_classes: ``C``; labels are in ``[0, C)``.
        k: detections kept per class (LVIS: 10,000).
        category_ids: ``(C,)`` the category id written for each label in
            :meth:`records` (default: the label itself). A background label can be
            given any id: it simply never appears if no detection carries it.
        buffer_size: detections buffered before they are merged into the kept set
            (or as many as are kept, if more: the merge then costs O(1) per detection,
            amortised). At most ``C * k + max(buffer_size, C * k)`` detections plus one
            :meth:`add`'s are held (:attr:`num_held`).
    """

    def __init__(self, *, num_classes: int, k: int, category_ids: Sequence[int] | np.ndarray | None = None,
                 buffer_size: int = 1 << 16) -> None:
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.k = check_positive_int("k", k)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        if category_ids is None:
            ids = np.arange(self.num_classes, dtype=np.int64)
        else:
            ids = np.asarray(category_ids)
            if ids.shape != (self.num_classes,) or ids.dtype.kind not in "iu":
                raise EvaluationError(f"category_ids must be {self.num_classes} integers (one per "
                                      f"label), got {ids.dtype} of shape {ids.shape}")
            if len(np.unique(ids)) != len(ids):
                raise EvaluationError("category_ids must not repeat an id")
        self.category_ids = ids.astype(np.int64)
        # Kept and buffered detections, each in the order they were added.
        self._kept = _empty()
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._floor = np.full(self.num_classes, -np.inf)

    def add(self, image_id: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add one image's detections.

        Args:
            image_id: the image's id (written as ``image_id`` in the records).
            boxes: ``(N, 4)`` ``x1, y1, x2, y2`` (a torchvision detector's output).
            scores: ``(N,)`` finite.
            labels: ``(N,)`` integers in ``[0, num_classes)``.

        Raises :class:`~bacl.evaluation.lvis_eval.EvaluationError` naming the argument
        and the image on bad shapes, types, labels or non-finite values.
        """
        if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
            raise EvaluationError(f"image_id must be an integer, got {image_id!r}")
        boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
        where = f"image {int(image_id)}"
        n = scores.shape[0] if scores.ndim == 1 else -1
        if scores.ndim != 1 or scores.dtype.kind not in "iuf":
            raise EvaluationError(f"{where}: scores must be a numeric (N,) array, got {scores.dtype} "
                                  f"of shape {scores.shape}")
        if boxes.shape != (n, 4) or boxes.dtype.kind not in "iuf":
            raise EvaluationError(f"{where}: boxes must be a numeric ({n}, 4) array, got {boxes.dtype} "
                                  f"of shape {boxes.shape}")
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise EvaluationError(f"{where}: labels must be an integer ({n},) array, got {labels.dtype} "
                                  f"of shape {labels.shape}")
        if n == 0:
            return
        if not (np.isfinite(scores).all() and np.isfinite(boxes).all()):
            raise EvaluationError(f"{where}: boxes and scores must be finite")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            bad = int(labels[(labels < 0) | (labels >= self.num_classes)][0])
            raise EvaluationError(f"{where}: label {bad} is outside [0, {self.num_classes})")
        labels = labels.astype(np.int64)
        scores = scores.astype(np.float64)
        # A detection that does not beat its class's k-th best so far can never be kept
        # (ties go to the earlier one).
        keep = scores > self._floor[labels]
        if not keep.any():
            return
        self._append({"image_id": np.full(int(keep.sum()), int(image_id), dtype=np.int64),
                      "label": labels[keep], "box": boxes[keep].astype(np.float64),
                      "score": scores[keep]})

    def merge(self, other: TopKPerClass) -> None:
        """Take in ``other``'s detections, as if added after all of ``self``'s.

        Merging every process's accumulator into rank 0's, in rank order, gives the
        selection of one pass over all images in that order.
        """
        if not isinstance(other, TopKPerClass):
            raise TypeError(f"can only merge another TopKPerClass, got {type(other).__name__}")
        if other is self:
            raise EvaluationError("cannot merge a TopKPerClass into itself")
        if (other.num_classes, other.k) != (self.num_classes, self.k) or not np.array_equal(
                other.category_ids, self.category_ids):
            raise EvaluationError(
                f"cannot merge TopKPerClass(num_classes={other.num_classes}, k={other.k}) into "
                f"TopKPerClass(num_classes={self.num_classes}, k={self.k}) or different category_ids")
        for part in [other._kept] + other._buffer:
            if len(part["score"]):
                self._append(part)
        self._compact()

    def min_scores(self) -> np.ndarray:
        """``(C,)`` float64: for each class, the ``k``-th best score kept as of the last
        merge into the kept set, ``-inf`` while fewer than ``k`` are kept.

        A detection scoring below it can never be kept, so inference may drop such
        boxes before NMS (``max(min_scores, MIN_SCORE)`` reproduces ``infer_topk``'s
        per-class threshold). Between merges it is a lower bound: safe, just looser.
        """
        return self._floor.copy()

    @property
    def num_held(self) -> int:
        """Detections held now, kept and buffered (what bounds the memory)."""
        return len(self._kept["score"]) + self._buffered

    def __len__(self) -> int:
        """Detections kept (after merging the buffer)."""
        self._compact()
        return len(self._kept["score"])

    def arrays(self) -> dict[str, np.ndarray]:
        """The kept detections as arrays in LVIS results form: ``image_id`` ``(M,)``,
        ``category_id`` ``(M,)``, ``bbox`` ``(M, 4)`` ``[x, y, w, h]``, ``score`` ``(M,)``.

        Sorted by category (label order), score descending, then the order they were
        added, so input order breaks ties as it did here. ``evaluate_fixed_ap`` /
        ``evaluate_pooled_ap`` accept this dict as ``detections``.
        """
        self._compact()
        kept = self._kept
        order = np.lexsort((-kept["score"], kept["label"]))
        box = kept["box"][order]
        xywh = np.concatenate([box[:, :2], box[:, 2:] - box[:, :2]], axis=1)
        return {"image_id": kept["image_id"][order],
                "category_id": self.category_ids[kept["label"][order]],
                "bbox": xywh, "score": kept["score"][order]}

    def records(self) -> list[dict[str, Any]]:
        """:meth:`arrays` as a list of ``{image_id, category_id, bbox, score}`` dicts
        (plain Python numbers, full precision), ready to write as an LVIS results json."""
        arrays = self.arrays()
        return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
                for i, c, b, s in zip(arrays["image_id"].tolist(), arrays["category_id"].tolist(),
                                      arrays["bbox"].tolist(), arrays["score"].tolist())]

    def _append(self, part: dict[str, np.ndarray]) -> None:
        self._buffer.append(part)
        self._buffered += len(part["score"])
        if self._buffered >= max(self.buffer_size, len(self._kept["score"])):
            self._compact()

    def _compact(self) -> None:
        """Merge the buffer into the kept set: the ``k`` best per class, in added order."""
        if not self._buffer:
            return
        parts = [self._kept] + self._buffer
        joined = {key: np.concatenate([p[key] for p in parts]) for key in self._kept}
        keep = top_scored_per_group(joined["label"], joined["score"], self.k)
        self._kept = {key: value[keep] for key, value in joined.items()}
        self._buffer, self._buffered = [], 0
        labels, scores = self._kept["label"], self._kept["score"]
        counts = np.bincount(labels, minlength=self.num_classes)
        lowest = np.full(self.num_classes, np.inf)
        np.minimum.at(lowest, labels, scores)
        self._floor = np.where(counts >= self.k, lowest, -np.inf)


def _empty() -> dict[str, np.ndarray]:
    return {"image_id": np.zeros(0, np.int64), "label": np.zeros(0, np.int64),
            "box": np.zeros((0, 4), np.float64), "score": np.zeros(0, np.float64)}
