"""Batching for detection: images differ in size, so a batch stays a pair of lists."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``.

    The detector (torchvision's ``GeneralizedRCNNTransform``) resizes and pads the
    list itself. An empty batch gives two empty lists.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
