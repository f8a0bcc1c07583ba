"""Repeat factors against a slow reference written from docs/method.md section 7."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bacl.data.repeat_factor_sampler import repeat_factors


def reference(sets, num_classes, threshold):
    num_images = len(sets)
    images_with = {c: sum(1 for s in sets if c in set(s)) for c in range(1, num_classes + 1)}
    out = []
    for s in sets:
        r = 1.0
        for c in set(s):
            f = images_with[c] / num_images
            r = max(r, max(1.0, math.sqrt(threshold / f)))
        out.append(r)
    return out


@pytest.mark.parametrize("threshold", [0.001, 0.05, 0.3])
def test_matches_slow_reference(threshold):
    rng = np.random.default_rng(0)
    num_classes = 30
    # Long-tailed: class c appears with probability ~ 1/c.
    sets = [
        [c for c in range(1, num_classes + 1) if rng.random() < 0.5 / c]
        for _ in range(300)
    ]
    got = repeat_factors(image_category_sets=sets, num_classes=num_classes, threshold=threshold)
    assert got.dtype == torch.float32 and got.shape == (300,)
    np.testing.assert_allclose(got.numpy(), reference(sets, num_classes, threshold), rtol=1e-6)


def test_hand_values():
    # 10 images; class 1 in one image (f = 0.1), class 2 in four (f = 0.4), class 3 unused.
    sets = [[1, 2], [2], [2, 2], [2]] + [[]] * 6
    got = repeat_factors(image_category_sets=sets, num_classes=3, threshold=0.5)
    expected = [math.sqrt(5), math.sqrt(0.5 / 0.4), math.sqrt(0.5 / 0.4), math.sqrt(0.5 / 0.4)]
    np.testing.assert_allclose(got.numpy(), expected + [1.0] * 6, rtol=1e-6)


def test_frequent_classes_and_empty_images_get_one():
    sets = [[1], [1], [], [1, 1]]
    got = repeat_factors(image_category_sets=sets, num_classes=1)  # default t = 0.001
    assert got.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_no_images():
    assert repeat_factors(image_category_sets=[], num_classes=5).shape == (0,)


def test_accepts_numpy_arrays_and_sets():
    sets = [np.array([1, 2]), {2}, (1,), []]
    got = repeat_factors(image_category_sets=sets, num_classes=2, threshold=1.0)
    np.testing.assert_allclose(got.numpy(), reference([[1, 2], [2], [1], []], 2, 1.0), rtol=1e-6)


@pytest.mark.parametrize("label", [0, 4])
def test_label_out_of_range(label):
    with pytest.raises(ValueError, match=rf"image_category_sets\[1\] has label {label}"):
        repeat_factors(image_category_sets=[[1], [2, label]], num_classes=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        repeat_factors(image_category_sets=[[1]], num_classes=1, threshold=0)
    with pytest.raises(ValueError, match="num_classes"):
        repeat_factors(image_category_sets=[[1]], num_classes=0)
