"""collate_detection keeps variable-size images and their targets as lists."""

from __future__ import annotations

import torch

from bacl.data.collate import collate_detection


def test_lists_of_images_and_targets():
    a = (torch.zeros(3, 4, 5), {"boxes": torch.zeros(0, 4), "image_id": 1})
    b = (torch.ones(3, 6, 2), {"boxes": torch.ones(2, 4), "image_id": 2})
    images, targets = collate_detection([a, b])
    assert [im.shape for im in images] == [(3, 4, 5), (3, 6, 2)]
    assert [t["image_id"] for t in targets] == [1, 2]
    assert images[1] is b[0] and targets[0] is a[1]


def test_empty_batch():
    assert collate_detection([]) == ([], [])
