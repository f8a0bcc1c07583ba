"""Polygon rasterisation: hand-made shapes, a slow per-pixel reference, pycocotools."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bacl.data.masks import instance_masks, polygon_mask
from bacl.lvis_format import read_lvis


def reference_mask(polygons, height: int, width: int) -> np.ndarray:
    """Per pixel: is the centre inside any polygon (even-odd ray cast to the right,
    edges half-open in y so each vertex is counted once)."""
    out = np.zeros((height, width), dtype=bool)
    for flat in polygons:
        pts = [(float(flat[k]), float(flat[k + 1])) for k in range(0, len(flat), 2)]
        if len(pts) < 3:
            continue
        for i in range(height):
            for j in range(width):
                px, py = j + 0.5, i + 0.5
                inside = False
                for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
                    if min(y0, y1) <= py < max(y0, y1):
                        x = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
                        if x > px:
                            inside = not inside
                out[i, j] |= inside
    return out


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_rectangle_with_integer_corners_covers_its_area():
    mask = polygon_mask([rect(1, 2, 4, 5)], height=7, width=6)
    expected = np.zeros((7, 6), bool)
    expected[2:5, 1:4] = True
    np.testing.assert_array_equal(mask, expected)


def test_centres_on_left_and_top_edges_are_in_right_and_bottom_out():
    mask = polygon_mask([rect(0.5, 0.5, 2.5, 2.5)], height=4, width=4)
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(mask, expected)
    # Two rectangles sharing the edge x = 2.5 never both take a pixel.
    right = polygon_mask([rect(2.5, 0.5, 3.5, 2.5)], height=4, width=4)
    assert not (mask & right).any() and right[0:2, 2].all()


def test_triangle_and_points_order():
    expected = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    for poly in ([0, 0, 4, 0, 0, 4], [0, 4, 4, 0, 0, 0]):  # either orientation
        np.testing.assert_array_equal(polygon_mask([poly], height=4, width=4), expected)
    # (n, 2) points are accepted too.
    np.testing.assert_array_equal(
        polygon_mask([np.array([[0, 0], [4, 0], [0, 4]])], height=4, width=4), expected)


def test_concave_l_shape():
    l_shape = [0, 0, 2, 0, 2, 3, 4, 3, 4, 4, 0, 4]
    expected = np.zeros((5, 5), bool)
    expected[0:4, 0:2] = True
    expected[3, 2:4] = True
    np.testing.assert_array_equal(polygon_mask([l_shape], height=5, width=5), expected)


def test_pentagram_centre_is_empty_by_even_odd():
    pts = []
    for k in range(5):
        a = math.pi / 2 + k * 4 * math.pi / 5
        pts += [10 + 9 * math.cos(a), 10 - 9 * math.sin(a)]
    mask = polygon_mask([pts], height=20, width=20)
    assert not mask[10, 10] and mask[3, 10]  # inner pentagon empty, a tip filled
    np.testing.assert_array_equal(mask, reference_mask([pts], 20, 20))


def test_union_of_polygons_and_clipping():
    polygons = [rect(-3, -3, 2, 2), rect(1, 1, 3, 3), rect(5, 5, 9, 9)]
    mask = polygon_mask(polygons, height=6, width=6)
    expected = np.zeros((6, 6), bool)
    expected[0:2, 0:2] = True
    expected[1:3, 1:3] = True
    expected[5, 5] = True
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("polygons", [[], [[1, 1]], [[1, 1, 3, 3]], [rect(1, 1, 1, 5)],
                                      [rect(-5, -5, -1, -1)], [rect(10, 0, 12, 3)]])
def test_shapes_that_cover_nothing(polygons):
    assert not polygon_mask(polygons, height=4, width=5).any()


def test_empty_image_and_bad_size():
    assert polygon_mask([rect(0, 0, 2, 2)], height=0, width=3).shape == (0, 3)
    with pytest.raises(ValueError, match="height and width"):
        polygon_mask([], height=-1, width=3)


def random_polygon(rng: np.random.Generator, height: int, width: int) -> list[float]:
    """A star-shaped polygon (random radii around a centre), partly outside at times."""
    n = int(rng.integers(3, 24))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.5, 1 + min(height, width) * 0.6, n)
    cx, cy = rng.uniform(-2, width + 2), rng.uniform(-2, height + 2)
    pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return np.round(pts, 2).reshape(-1).tolist()


def test_random_polygons_match_the_slow_reference():
    rng = np.random.default_rng(0)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(1, 24, size=2))
        polygons = [random_polygon(rng, height, width) for _ in range(int(rng.integers(1, 4)))]
        np.testing.assert_array_equal(polygon_mask(polygons, height=height, width=width),
                                      reference_mask(polygons, height, width))


def distance_to_outline(flat, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance ``(n,)`` from points ``(x, y)`` to the closed polygon's edges."""
    a = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    b = np.roll(a, -1, axis=0)
    p = np.stack([x, y], axis=1)[:, None, :]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    closest = a + t[..., None] * ab
    return np.sqrt(((p - closest) ** 2).sum(-1)).min(axis=1)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_random_polygons_agree_with_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    height, width = 60, 80
    differing, total = 0, 0
    for _ in range(30):
        polygons = [random_polygon(rng, height, width)]
        ours = polygon_mask(polygons, height=height, width=width)
        coco = mask_utils.decode(mask_utils.merge(
            mask_utils.frPyObjects(polygons, height, width))).astype(bool)
        # The rules part only on pixels an edge passes through (centre within
        # half a pixel diagonal of the outline).
        diff = ours ^ coco
        rows, cols = np.nonzero(diff)
        near = distance_to_outline(polygons[0], cols + 0.5, rows + 0.5)
        assert (near <= math.sqrt(0.5) + 1e-6).all(), near.max()
        differing += int(diff.sum())
        total += int((ours | coco).sum())
    assert differing <= 0.02 * total


def test_instance_masks_follow_the_requested_order():
    data = {
        "images": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2],
             "segmentation": [rect(0, 0, 2, 2)]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 2, 2],
             "segmentation": [rect(2, 0, 4, 2), rect(0, 3, 1, 4)]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    polygons = read_lvis(data, segmentation=True).polygons
    masks = instance_masks(polygons, np.array([1, 0, 2]), height=4, width=4)
    assert masks.dtype == bool and masks.shape == (3, 4, 4)
    np.testing.assert_array_equal(masks[0], polygon_mask(
        [rect(2, 0, 4, 2), rect(0, 3, 1, 4)], height=4, width=4))
    assert masks[1].sum() == 4 and masks[1][:2, :2].all()
    assert not masks[2].any()  # no segmentation: nothing to paint
    assert instance_masks(polygons, np.zeros(0, np.int64), height=4, width=5).shape == (0, 4, 5)
