"""Training-time augmentation on ``(image, target)`` pairs.

Every transform is called as ``t(image, target, generator)`` and draws randomness
only from ``generator``, which the dataset seeds per sample (see
:class:`bacl.data.lvis_dataset.LVISDetection`), so augmentation does not depend on
the DataLoader's workers or on where a run was resumed. Multi-scale resizing and
normalisation happen inside the detector (torchvision's ``GeneralizedRCNNTransform``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target, torch.Generator], tuple[torch.Tensor, Target]]


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
    """Mirror the image and its boxes left-right with probability ``prob``.

    Image ``(C, H, W)``; ``target["boxes"]`` ``(K, 4)`` xyxy in pixels, mapped to
    ``x1' = W - x2, x2' = W - x1``. One uniform number is drawn per call whatever
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
        target = dict(target)
        boxes = target["boxes"]
        target["boxes"] = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob})"
