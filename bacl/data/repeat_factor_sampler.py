"""Repeat factors for class-aware resampling (LVIS paper; docs/method.md section 7).

For class c, ``f(c)`` is the fraction of training images that contain it and
``r(c) = max(1, sqrt(t / f(c)))``; an image is repeated ``r(image) = max r(c)`` over
the classes it contains (1 for an image with none). The sampler in
:mod:`bacl.data.samplers` turns these real factors into integer counts per epoch.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

# The LVIS paper's and detectron2's default threshold t.
DEFAULT_THRESHOLD = 0.001


def repeat_factors(
    *,
    image_category_sets: Sequence[Iterable[int]],
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
) -> torch.Tensor:
    """Per-image repeat factors.

    Args:
        image_category_sets: per image, the labels (``1..num_classes``) it contains;
            repeats within an image count once.
        num_classes: C.
        threshold: t > 0.

    Returns:
        ``(num_images,)`` float32, every value >= 1.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    num_images = len(image_category_sets)
    if num_images == 0:
        return torch.zeros(0, dtype=torch.float32)
    per_image = [np.unique(np.asarray(list(s), dtype=np.int64)) for s in image_category_sets]
    lengths = np.array([len(s) for s in per_image], dtype=np.int64)
    labels = np.concatenate(per_image) if lengths.sum() else np.zeros(0, np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        bad = int(labels[(labels < 1) | (labels > num_classes)][0])
        image = int(np.flatnonzero([np.any((s < 1) | (s > num_classes)) for s in per_image])[0])
        raise ValueError(
            f"image_category_sets[{image}] has label {bad}, outside 1..{num_classes}"
        )
    image_fraction = np.bincount(labels, minlength=num_classes + 1) / num_images
    with np.errstate(divide="ignore"):
        class_factor = np.maximum(1.0, np.sqrt(threshold / image_fraction))
    factors = np.ones(num_images, dtype=np.float64)
    np.maximum.at(factors, np.repeat(np.arange(num_images), lengths), class_factor[labels])
    return torch.from_numpy(factors.astype(np.float32))
