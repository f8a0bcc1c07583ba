"""Instance masks from LVIS polygons (for copy-paste augmentation).

Pixel coverage rule: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``
(the LVIS / COCO convention) and belongs to a polygon when its centre
``(j + 0.5, i + 0.5)`` lies inside it by the even-odd rule. A centre exactly on an edge
counts as inside on the polygon's left and top edges and outside on its right and
bottom ones (half-open spans), so two polygons sharing an edge never both take a
pixel, and an axis-aligned rectangle with integer corners covers exactly its area in
pixels. An annotation's mask is the union of its polygons; polygons with fewer than
three points cover nothing; anything outside the image is clipped.

pycocotools' ``frPyObjects`` + ``decode`` (the COCO rasteriser) follows the same
centre rule and even-odd filling except on exact ties: it can differ on pixels whose
centre lies exactly on an edge (e.g. a square with half-integer corners).

The fill is a vectorised scanline: each non-horizontal edge is crossed with the
centre line of every row it spans, crossings are sorted per polygon and row and
paired into spans, and spans are painted with a difference array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bacl.lvis_format import Polygons


def polygon_mask(polygons: Sequence[np.ndarray], *, height: int, width: int) -> np.ndarray:
    """The union of ``polygons`` as an ``(height, width)`` bool mask.

    Args:
        polygons: each ``(2 * n,)`` flat ``[x1, y1, x2, y2, ...]`` (the LVIS layout) or
            ``(n, 2)``, in pixels.
    """
    if height < 0 or width < 0:
        raise ValueError(f"height and width must be >= 0, got {height} x {width}")
    out = np.zeros((height, width), dtype=bool)
    _paint(out, polygons)
    return out


def instance_masks(polygons: Polygons, annotations: np.ndarray, *, height: int,
                   width: int) -> np.ndarray:
    """``(K, height, width)`` bool masks of ``annotations`` ``(K,)`` (indices into
    ``polygons``), in that order; ``(0, height, width)`` when ``K == 0``."""
    annotations = np.asarray(annotations, dtype=np.int64).reshape(-1)
    out = np.zeros((len(annotations), height, width), dtype=bool)
    for k, a in enumerate(annotations.tolist()):
        _paint(out[k], polygons.of_annotation(a))
    return out


def _paint(out: np.ndarray, polygons: Sequence[np.ndarray]) -> None:
    """Set the pixels of ``out`` ``(H, W)`` covered by any of ``polygons``."""
    height, width = out.shape
    edges = [_edges(np.asarray(p, dtype=np.float64).reshape(-1, 2)) for p in polygons]
    edges = [e for e in edges if len(e)]
    if not edges or height == 0 or width == 0:
        return
    polygon_id = np.concatenate([np.full(len(e), p) for p, e in enumerate(edges)])
    x0, y0, x1, y1 = np.concatenate(edges).T

    # Rows whose centre line y = r + 0.5 meets the edge, half-open: ylo <= y < yhi.
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.clip(np.ceil(ylo - 0.5), 0, height).astype(np.int64)
    end = np.clip(np.ceil(yhi - 0.5), 0, height).astype(np.int64)
    count = np.maximum(end - first, 0)
    total = int(count.sum())
    if total == 0:
        return
    edge = np.repeat(np.arange(len(x0)), count)
    row = first[edge] + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    y = row + 0.5
    x = x0[edge] + (y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])

    # Per polygon and row the crossings come in pairs: span [x_a, x_b) is inside.
    order = np.lexsort((x, row, polygon_id[edge]))
    row, x = row[order][0::2], x[order]
    start = np.clip(np.ceil(x[0::2] - 0.5), 0, width).astype(np.int64)
    stop = np.clip(np.ceil(x[1::2] - 0.5), 0, width).astype(np.int64)
    keep = stop > start
    row, start, stop = row[keep], start[keep], stop[keep]
    if len(row) == 0:
        return
    # Paint over the spans' bounding rectangle only: count spans covering each pixel.
    top, bottom = int(row.min()), int(row.max()) + 1
    left, right = int(start.min()), int(stop.max())
    stride = right - left + 1
    size = (bottom - top) * stride
    base = (row - top) * stride - left
    diff = np.bincount(base + start, minlength=size)
    diff -= np.bincount(base + stop, minlength=size)
    covered = np.cumsum(diff.reshape(bottom - top, stride), axis=1)[:, :-1] > 0
    out[top:bottom, left:right] |= covered


def _edges(points: np.ndarray) -> np.ndarray:
    """``(E, 4)`` ``x0, y0, x1, y1`` of the closed polygon ``points`` ``(n, 2)``,
    horizontal edges dropped (they never cross a row's centre line)."""
    if len(points) < 3:
        return np.zeros((0, 4))
    nxt = np.roll(points, -1, axis=0)
    edges = np.concatenate([points, nxt], axis=1)
    return edges[edges[:, 1] != edges[:, 3]]
