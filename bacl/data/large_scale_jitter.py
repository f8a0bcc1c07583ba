"""Large-scale jitter: random resize, random crop, flip, pad to a fixed square.

BACL's representation stage (docs/method.md section 4) trains on LVIS with the longer side
resized to ``1280 * r``, ``r ~ U(0.8, 1.25)``, a random crop of at most 1280 x 1280,
a horizontal flip and zero padding to 1280 x 1280, in that order (the reference's
``load_pipeline`` in Tianhao-Qi/BACL
``configs/bacl/bacl_representation_faster_rcnn_r50_fpn_1x_lvis_v1.py``, with ``Resize``,
``RandomCrop`` and ``Pad`` of ``mmdet/datasets/pipelines/transforms.py``; torchvision's
``ScaleJitter`` and ``FixedSizeCrop`` in pytorch/vision
``references/detection/transforms.py`` are the same idea). The flip comes before the
padding, so the image always sits in the top-left corner.

Every transform follows :mod:`bacl.data.transforms`: ``t(image, target, generator)``,
randomness only from ``generator``, and a fixed number of draws per call whatever the
input, so one sample's draws never shift another's. Masks ``(K, H, W)`` bool, when the
target has them, move with the image; the crop then recomputes every box from its
visible mask (the reference's ``recompute_bbox=True``).
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as TF

from bacl.data.instance_masks import masks_to_boxes, resize_masks
from bacl.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    Target,
    TransformInputError,
    check_masks,
)

#: The reference's output size and scale range for LVIS.
LVIS_OUTPUT_SIZE = 1280
LVIS_SCALE_RANGE = (0.8, 1.25)
#: Boxes must end wider and taller than this (pixels) to be kept (the reference's
#: ``FilterAnnotations(min_gt_bbox_wh=(1e-2, 1e-2))``).
MIN_BOX_SIZE = 1e-2


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _image_size(image: torch.Tensor, target: Target) -> tuple[int, int]:
    if image.dim() != 3 or image.shape[1] < 1 or image.shape[2] < 1:
        raise TransformInputError(
            f"image id {target.get('image_id')}: image must be (C, H, W) with H, W >= 1, "
            f"got shape {tuple(image.shape)}"
        )
    return int(image.shape[1]), int(image.shape[2])


class ScaleJitter:
    """Resize, aspect ratio kept, so the longer side is ``int(target_size * r)``.

    ``r`` is drawn uniformly from ``scale_range`` (one draw per call). The new size is
    ``round(H * s), round(W * s)`` with ``s = int(target_size * r) / max(H, W)`` (the
    reference's ``Resize(img_scale=(S, S), ratio_range=..., keep_ratio=True)``).

    Image ``(C, H, W)`` float, bilinear without antialiasing (as the reference's OpenCV
    resize); ``boxes`` ``(K, 4)`` scaled by the actual ratios ``W'/W``, ``H'/H`` and
    clipped to the new image; ``masks`` ``(K, H, W)`` -> ``(K, H', W')`` nearest.
    """

    def __init__(
        self, *, target_size: int = LVIS_OUTPUT_SIZE,
        scale_range: tuple[float, float] = LVIS_SCALE_RANGE,
    ) -> None:
        self.target_size = _check_size("target_size", target_size)
        low, high = (float(v) for v in scale_range)
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high):
            raise ValueError(f"scale_range must be finite with 0 < low <= high, got {scale_range!r}")
        self.scale_range = (low, high)

    def __call__(
        self, image: torch.Tensor, target: Target, generator: torch.Generator
    ) -> tuple[torch.Tensor, Target]:
        low, high = self.scale_range
        ratio = low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()
        height, width = _image_size(image, target)
        masks = check_masks(image, target)
        longer = max(1, int(self.target_size * ratio))
        factor = longer / max(height, width)
        new_height = max(1, int(height * factor + 0.5))
        new_width = max(1, int(width * factor + 0.5))

        # Channels-last: the same values, about twice as fast on the CPU; PadTo makes the
        # image contiguous again.
        image = TF.resize(
            image.unsqueeze(0).contiguous(memory_format=torch.channels_last),
            [new_height, new_width], antialias=False,
        ).squeeze(0)
        target = dict(target)
        scale = torch.tensor(
            [new_width / width, new_height / height] * 2, dtype=torch.float32
        )
        boxes = target["boxes"] * scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, new_width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, new_height)
        target["boxes"] = boxes
        if masks is not None:
            target["masks"] = resize_masks(masks, height=new_height, width=new_width)
        return image, target

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(target_size={self.target_size}, "
                f"scale_range={self.scale_range})")


class RandomCrop:
    """Crop a random ``min(H, size) x min(W, size)`` window; objects left empty are dropped.

    The top and left offsets are drawn uniformly, each from its own integer range
    (two draws per call, also when the image fits). Boxes ``(K, 4)`` are shifted and
    clipped to the window; those with no area left are dropped. With ``masks``
    ``(K, H, W)`` the masks are cropped and every box becomes the box of its visible
    mask. Objects whose box ends no wider or taller than ``min_box_size`` are dropped
    (without masks: the clipped box; with masks: an object with no pixel left).
    ``labels`` follow the boxes.
    """

    def __init__(self, *, size: int = LVIS_OUTPUT_SIZE, min_box_size: float = MIN_BOX_SIZE) -> None:
        self.size = _check_size("size", size)
        if not (math.isfinite(float(min_box_size)) and float(min_box_size) >= 0.0):
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size!r}")
        self.min_box_size = float(min_box_size)

    def __call__(
        self, image: torch.Tensor, target: Target, generator: torch.Generator
    ) -> tuple[torch.Tensor, Target]:
        height, width = _image_size(image, target)
        masks = check_masks(image, target)
        crop_height, crop_width = min(height, self.size), min(width, self.size)
        top = int(torch.randint(0, height - crop_height + 1, (), generator=generator))
        left = int(torch.randint(0, width - crop_width + 1, (), generator=generator))

        image = image[:, top:top + crop_height, left:left + crop_width]
        target = dict(target)
        offset = torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes = target["boxes"] - offset
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, crop_width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, crop_height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if masks is not None:
            # Indexing with `keep` copies just the window, so the uncropped stack is freed.
            masks = masks[keep, top:top + crop_height, left:left + crop_width]
            boxes = masks_to_boxes(masks)
        else:
            boxes = boxes[keep]
        labels = target["labels"][keep]
        large = ((boxes[:, 2] - boxes[:, 0]) > self.min_box_size) & (
            (boxes[:, 3] - boxes[:, 1]) > self.min_box_size
        )
        target["boxes"] = boxes[large]
        target["labels"] = labels[large]
        if masks is not None:
            target["masks"] = masks[large]
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, min_box_size={self.min_box_size})"


class PadTo:
    """Zero-pad the image at the bottom and right to ``size x size`` (no randomness).

    Image ``(C, H, W)`` with ``H, W <= size`` -> ``(C, size, size)``, contiguous; ``masks``
    ``(K, H, W)`` -> ``(K, size, size)`` padded with False; boxes unchanged. A larger
    image raises :class:`~bacl.data.transforms.TransformInputError`.
    """

    def __init__(self, *, size: int = LVIS_OUTPUT_SIZE) -> None:
        self.size = _check_size("size", size)

    def __call__(
        self, image: torch.Tensor, target: Target, generator: torch.Generator
    ) -> tuple[torch.Tensor, Target]:
        height, width = _image_size(image, target)
        if height > self.size or width > self.size:
            raise TransformInputError(
                f"image id {target.get('image_id')}: a {height}x{width} image cannot be "
                f"padded to {self.size}x{self.size}; crop it first"
            )
        masks = check_masks(image, target)
        if height == width == self.size:
            return image.contiguous(), target
        padded = image.new_zeros(image.shape[0], self.size, self.size)
        padded[:, :height, :width] = image
        if masks is not None:
            target = dict(target)
            target["masks"] = TF.pad(masks, [0, 0, self.size - width, self.size - height], fill=False)
        return padded, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def large_scale_jitter(
    *,
    output_size: int = LVIS_OUTPUT_SIZE,
    scale_range: tuple[float, float] = LVIS_SCALE_RANGE,
    flip_prob: float = 0.5,
    min_box_size: float = MIN_BOX_SIZE,
) -> Compose:
    """The reference's LSJ: :class:`ScaleJitter`, :class:`RandomCrop`, flip, :class:`PadTo`.

    Every image leaves as ``(3, output_size, output_size)``. Four draws per sample
    (scale, top, left, flip).
    """
    return Compose([
        ScaleJitter(target_size=output_size, scale_range=scale_range),
        RandomCrop(size=output_size, min_box_size=min_box_size),
        RandomHorizontalFlip(prob=flip_prob),
        PadTo(size=output_size),
    ])
