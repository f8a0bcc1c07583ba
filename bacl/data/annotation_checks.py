"""Repairs of the boxes real LVIS contains on purpose, for training.

Reading and checking an annotation file is :func:`bacl.lvis_format.read_lvis`'s job
(every error names the file and the record); what is left here is what training does
to valid boxes it cannot use: tiny boxes and boxes outside their image are dropped,
boxes reaching outside are clipped, each with a logged count (:func:`clean_boxes`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bacl.lvis_format import AnnotationError, first_ids, image_relative_path

__all__ = ["AnnotationError", "CleanedBoxes", "clean_boxes", "image_relative_path"]

logger = logging.getLogger(__name__)


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
        boxes_xywh: ``(M, 4)`` finite, non-negative width/height (as
            :func:`bacl.lvis_format.read_lvis` guarantees).
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
            source, int(tiny.sum()), min_size, first_ids(ann_ids[tiny]),
        )
    if outside.any():
        logger.warning(
            "%s: dropped %d annotations whose box lies entirely outside its image "
            "(annotation ids %s)",
            source, int(outside.sum()), first_ids(ann_ids[outside]),
        )
    if clipped.any():
        logger.warning(
            "%s: clipped %d boxes that reach outside their image (annotation ids %s)",
            source, int(clipped.sum()), first_ids(ann_ids[clipped]),
        )
    return CleanedBoxes(
        keep=keep,
        boxes_xyxy=xyxy,
        num_tiny=int(tiny.sum()),
        num_outside=int(outside.sum()),
        num_clipped=int(clipped.sum()),
    )
