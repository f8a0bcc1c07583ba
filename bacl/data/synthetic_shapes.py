"""Shape outlines of the synthetic benchmark: polygons, their area, their rasterisation.

Every shape is a polygon (a circle is a 32-sided one), so the outline that is drawn
is exactly the LVIS ``segmentation`` that is written. Coordinates are in pixels with
the origin at the top-left corner of the image and ``y`` pointing down; a pixel
``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

# Supersampling factor of the rasteriser: edges get 16 coverage levels, enough for
# anti-aliased 14-pixel objects at a cost of microseconds per object.
SUPERSAMPLE = 4


def _regular(n: int, *, start_deg: float = 90.0) -> np.ndarray:
    angles = np.deg2rad(start_deg + np.arange(n) * 360.0 / n)
    return np.stack([np.cos(angles), -np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outline = _regular(2 * points)
    outline[1::2] *= inner
    return outline


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array(
        [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]],
        dtype=np.float64,
    )


def _heart(n: int = 32) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y], axis=1) / 16.0


# Name -> unit outline (vertices in order, roughly within the unit circle). The order
# is the order in which ``num_shapes`` takes them; the first five are the most
# distinct at 14 pixels. The diamond is a narrow rhombus so that it stays apart from
# a square under the +-15 degree rotation jitter.
SHAPES: dict[str, Callable[[], np.ndarray]] = {
    "circle": lambda: _regular(32),
    "square": lambda: _regular(4, start_deg=45.0),
    "triangle": lambda: _regular(3),
    "star": _star,
    "cross": _cross,
    "hexagon": lambda: _regular(6, start_deg=0.0),
    "diamond": lambda: _regular(4) * np.array([0.6, 1.0]),
    "heart": _heart,
}


@lru_cache(maxsize=None)
def _unit_outline(shape: str) -> np.ndarray:
    try:
        outline = SHAPES[shape]()
    except KeyError:
        raise KeyError(f"unknown shape {shape!r}; known: {list(SHAPES)}") from None
    outline.setflags(write=False)
    return outline


def shape_outline(shape: str, *, size: float, angle_deg: float = 0.0, aspect: float = 1.0) -> np.ndarray:
    """The outline of ``shape`` centred on its box at the origin, box side ``size``.

    ``aspect`` stretches the shape horizontally (``> 1``) or vertically before the
    rotation by ``angle_deg`` (counter-clockwise on screen). The result is scaled so
    that the larger side of its bounding box is ``size`` pixels.

    Returns ``(K, 2)`` float64 ``(x, y)`` vertices.
    """
    unit = _unit_outline(shape)
    stretch = np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    theta = math.radians(angle_deg)
    # y points down, so a counter-clockwise turn on screen is a clockwise one in (x, y).
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    points = (unit * stretch) @ rotation.T
    lo, hi = points.min(axis=0), points.max(axis=0)
    points = (points - (lo + hi) / 2.0) * (size / float((hi - lo).max()))
    return points


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon ``(K, 2)`` by the shoelace formula (pixels squared)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_box(polygon: np.ndarray) -> tuple[float, float, float, float]:
    """``[x, y, w, h]`` of the polygon's bounding box."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def rasterise_polygon(polygon: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Anti-aliased coverage of ``polygon`` on the pixel grid, over its bounding box.

    Returns ``(x0, y0, alpha)``: ``alpha`` is ``(h, w)`` float32 in ``[0, 1]`` and its
    top-left pixel is image pixel ``(y0, x0)``. Callers clip the window to the image.
    """
    x0, y0 = (int(math.floor(v)) for v in polygon.min(axis=0))
    x1, y1 = (int(math.ceil(v)) for v in polygon.max(axis=0))
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    s = SUPERSAMPLE
    canvas = Image.new("L", (w * s, h * s), 0)
    # PIL fills the pixels whose centres lie inside; shifting by half a sub-pixel
    # makes sub-pixel (i, j) stand for the point (j + 0.5, i + 0.5) / s.
    local = (polygon - np.array([x0, y0])) * s - 0.5
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in local.tolist()], fill=255)
    alpha = np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return x0, y0, alpha


def polygon_mask(polygon: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Hard mask of ``polygon`` (pixels whose centre is inside), over its bounding box.

    A cheaper stand-in for ``rasterise_polygon(polygon)[2] >= 0.5`` where only areas
    matter (occlusion bookkeeping). Returns ``(x0, y0, mask)`` with ``mask`` bool ``(h, w)``.
    """
    x0, y0 = (int(math.floor(v)) for v in polygon.min(axis=0))
    x1, y1 = (int(math.ceil(v)) for v in polygon.max(axis=0))
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    canvas = Image.new("1", (w, h), 0)
    local = polygon - np.array([x0 + 0.5, y0 + 0.5])
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in local.tolist()], fill=1)
    return x0, y0, np.asarray(canvas, dtype=bool)
