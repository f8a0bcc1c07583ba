"""Mask boxes and nearest resizing against slow per-pixel references."""

from __future__ import annotations

import math

import pytest
import torch

from bacl.data.instance_masks import masks_to_boxes, resize_masks


def slow_boxes(masks: torch.Tensor) -> list[list[float]]:
    out = []
    for mask in masks:
        ys, xs = [], []
        for y in range(mask.shape[0]):
            for x in range(mask.shape[1]):
                if mask[y, x]:
                    ys.append(y)
                    xs.append(x)
        out.append([min(xs), min(ys), max(xs) + 1, max(ys) + 1] if xs else [0.0] * 4)
    return out


def slow_resize(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = mask.shape
    out = torch.zeros(height, width, dtype=torch.bool)
    for i in range(height):
        for j in range(width):
            out[i, j] = mask[min(h - 1, math.floor((i + 0.5) * h / height)),
                             min(w - 1, math.floor((j + 0.5) * w / width))]
    return out


def test_boxes_match_slow_reference_on_random_masks():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 9, 13, generator=g) > 0.93
    masks[3] = False  # an empty mask
    masks[4] = True  # a full one
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32 and boxes.shape == (12, 4)
    assert boxes.tolist() == slow_boxes(masks)
    assert boxes[3].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert boxes[4].tolist() == [0.0, 0.0, 13.0, 9.0]


def test_box_of_a_single_pixel_covers_it():
    mask = torch.zeros(1, 5, 6, dtype=torch.bool)
    mask[0, 2, 4] = True
    assert masks_to_boxes(mask).tolist() == [[4.0, 2.0, 5.0, 3.0]]


def test_boxes_of_no_masks():
    assert masks_to_boxes(torch.zeros(0, 7, 7, dtype=torch.bool)).shape == (0, 4)


@pytest.mark.parametrize("size", [(5, 7), (20, 3), (9, 13), (1, 1)])
def test_resize_matches_slow_reference(size):
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(3, 9, 13, generator=g) > 0.5
    out = resize_masks(masks, height=size[0], width=size[1])
    assert out.dtype == torch.bool and out.shape == (3, *size)
    for k in range(3):
        assert torch.equal(out[k], slow_resize(masks[k], *size))


def test_resize_of_no_masks_and_bad_sizes():
    assert resize_masks(torch.zeros(0, 4, 4, dtype=torch.bool), height=8, width=2).shape == (0, 8, 2)
    with pytest.raises(ValueError, match="positive"):
        resize_masks(torch.zeros(1, 4, 4, dtype=torch.bool), height=0, width=2)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        masks_to_boxes(torch.zeros(4, 4, dtype=torch.bool))
