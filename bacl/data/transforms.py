"""Training-time augmentation on ``(image, target)`` pairs.

Every transform is called as ``t(image, target, generator)`` and draws randomness
only from ``generator``, which the dataset seeds per sample (see
:class:`bacl.data.lvis_dataset.LVISDetection`), so augmentation does not depend on
the DataLoader's workers or on where a run was resumed. Multi-scale resizing and
normalisation happen inside the detector (torchvision's ``GeneralizedRCNNTransform``).

A target holds ``boxes`` ``(K, 4)`` float32 xyxy pixels, ``labels`` ``(K,)`` int64,
``image_id``, ``orig_size``, and optionally ``masks`` ``(K, H, W)`` bool at the image's
resolution; geometric transforms move the masks with the image. Large-scale jitter is
in :mod:`bacl.data.large_scale_jitter`, copy-paste in :mod:`bacl.data.copy_paste`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from bacl.errors import BaclError

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target, torch.Generator], tuple[torch.Tensor, Target]]


class TransformInputError(BaclError, ValueError):
    """An image or target a transform cannot use (e.g. masks that do not match the image)."""


def check_masks(image: torch.Tensor, target: Target) -> torch.Tensor | None:
    """``target["masks"]`` checked against ``image`` ``(C, H, W)`` and the boxes, or None.

    Raises :class:`TransformInputError`, naming the image id, unless the masks are
    ``(K, H, W)`` bool with K the number of boxes.
    """
    masks = target.get("masks")
    if masks is None:
        return None
    expected = (len(target["boxes"]), *image.shape[-2:])
    if masks.dtype != torch.bool or tuple(masks.shape) != expected:
        raise TransformInputError(
            f"image id {target.get('image_id')}: masks must be bool of shape {expected} "
            f"(boxes, height, width), got {masks.dtype} {tuple(masks.shape)}"
        )
    return masks


class Compose:
    """Apply transforms in order, all drawing from the one generator."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, image: torch.Tensor, target: Target, generator: torch.Generator
    ) -> tuple[torch.Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror the image, its boxes and masks left-right with probability ``prob``.

    Image ``(C, H, W)``; ``target["boxes"]`` ``(K, 4)`` xyxy in pixels, mapped to
    ``x1' = W - x2, x2' = W - x1``; ``target["masks"]`` ``(K, H, W)``, when present,
    mirrored along W. One uniform number is drawn per call whatever
    ``prob`` is, so the generator advances the same way for every setting.
    """

    def __init__(self, *, prob: float = 0.5) -> None:
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)

    def __call__(
        self, image: torch.Tensor, target: Target, generator: torch.Generator
    ) -> tuple[torch.Tensor, Target]:
        draw = torch.rand((), generator=generator).item()
        if draw >= self.prob:
            return image, target
        width = image.shape[-1]
        masks = check_masks(image, target)
        target = dict(target)
        if masks is not None:
            target["masks"] = masks.flip(-1)
        boxes = target["boxes"]
        target["boxes"] = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob})"
