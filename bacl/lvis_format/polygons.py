"""LVIS polygon segmentations in three flat arrays, read in batches.

LVIS v1 train has 1.27M annotations with about a hundred polygon coordinates each:
as Python lists of floats that would be gigabytes in every DataLoader worker. Here
they are one float32 array plus two offset arrays, and the reader never holds more
than one batch of them as Python objects.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from bacl.lvis_format.diagnosis import check_segmentation, record_error
from bacl.lvis_format.errors import AnnotationError
from bacl.lvis_format.records import Segmentation

# What an annotation's ``segmentation`` holds.
POLYGONS, RLE, MISSING = 0, 1, 2
KIND_NAMES = {POLYGONS: "polygons", RLE: "an RLE object", MISSING: "missing"}
# Annotations decoded to Python objects at a time (about 60 MB at LVIS density).
BATCH = 20_000


@dataclass(frozen=True, kw_only=True)
class Polygons:
    """The polygons of ``M`` annotations, in annotation order.

    Attributes:
        coordinates: ``(T,)`` float32, ``x1, y1, x2, y2, ...`` of every polygon in turn,
            in image pixels (LVIS: the pixel ``(row i, column j)`` covers
            ``[j, j + 1) x [i, i + 1)``).
        polygon_offsets: ``(P + 1,)`` int64, polygon ``p`` is
            ``coordinates[polygon_offsets[p]:polygon_offsets[p + 1]]`` (an even count).
        annotation_offsets: ``(M + 1,)`` int64, annotation ``a`` owns polygons
            ``annotation_offsets[a]:annotation_offsets[a + 1]`` (none unless its kind
            is :data:`POLYGONS`).
        kind: ``(M,)`` int8, :data:`POLYGONS`, :data:`RLE` or :data:`MISSING`.
    """

    coordinates: np.ndarray
    polygon_offsets: np.ndarray
    annotation_offsets: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def of_annotation(self, index: int) -> list[np.ndarray]:
        """The polygons of annotation ``index``, each a ``(2 * n_points,)`` float32 view."""
        first, end = self.annotation_offsets[index], self.annotation_offsets[index + 1]
        off = self.polygon_offsets
        return [self.coordinates[off[p]:off[p + 1]] for p in range(first, end)]

    @classmethod
    def empty(cls, num_annotations: int = 0) -> "Polygons":
        return cls(coordinates=np.zeros(0, np.float32), polygon_offsets=np.zeros(1, np.int64),
                   annotation_offsets=np.zeros(num_annotations + 1, np.int64),
                   kind=np.full(num_annotations, MISSING, np.int8))


def polygons_from_raw(raws: Sequence[msgspec.Raw], *, ann_ids: np.ndarray,
                      source: str) -> Polygons:
    """Polygons from each annotation's ``segmentation`` JSON text (empty: key absent)."""
    def decode(first: int, end: int) -> list[Any]:
        batch = [r if len(r) else b"null" for r in raws[first:end]]
        return msgspec.json.decode(b"[" + b",".join(batch) + b"]", type=list[Segmentation])

    def value(i: int) -> Any:
        return json.loads(bytes(raws[i])) if len(raws[i]) else None

    return _read_batches(len(raws), decode, value, ann_ids, source)


def polygons_from_records(records: Sequence[Any], *, ann_ids: np.ndarray,
                          source: str) -> Polygons:
    """Polygons from annotation dicts (their ``segmentation`` key, when present)."""
    def value(i: int) -> Any:
        return records[i].get("segmentation")

    def decode(first: int, end: int) -> list[Any]:
        return msgspec.convert([value(i) for i in range(first, end)], list[Segmentation])

    return _read_batches(len(records), decode, value, ann_ids, source)


def _read_batches(num: int, decode: Callable[[int, int], list[Any]],
                  value: Callable[[int], Any], ann_ids: np.ndarray, source: str) -> Polygons:
    parts = []
    for first in range(0, num, BATCH):
        end = min(first + BATCH, num)
        try:
            values = decode(first, end)
        except msgspec.ValidationError as err:
            located = re.search(r"at `\$\[(\d+)\]", str(err))
            if not located:
                raise AnnotationError(f"{source}: a 'segmentation' is not valid: {err}") from err
            i = first + int(located.group(1))
            check_segmentation(i, int(ann_ids[i]), value(i), source)
            raise record_error(source, "annotations", i, int(ann_ids[i]),
                               f"'segmentation' is not valid: {err}") from err
        parts.append(_flatten(values))
    if not parts:
        return Polygons.empty()
    kinds, polygons_per_ann, lengths, coords = (np.concatenate(p) for p in zip(*parts))
    polygons = Polygons(
        coordinates=coords,
        polygon_offsets=_offsets(lengths),
        annotation_offsets=_offsets(polygons_per_ann),
        kind=kinds,
    )
    _check_values(polygons, ann_ids, source)
    return polygons


def _flatten(values: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(values)
    kinds = np.fromiter((POLYGONS if type(v) is list else MISSING if v is None else RLE
                         for v in values), np.int8, n)
    per_ann = np.fromiter((len(v) if type(v) is list else 0 for v in values), np.int64, n)
    polygons = list(itertools.chain.from_iterable(v for v in values if type(v) is list))
    lengths = np.fromiter(map(len, polygons), np.int64, len(polygons))
    coords = np.fromiter(itertools.chain.from_iterable(polygons), np.float32, int(lengths.sum()))
    return kinds, per_ann, lengths, coords


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _check_values(polygons: Polygons, ann_ids: np.ndarray, source: str) -> None:
    """Every polygon has an even number of finite coordinates."""
    lengths = np.diff(polygons.polygon_offsets)
    odd = np.flatnonzero(lengths % 2)
    bad_values = np.flatnonzero(~np.isfinite(polygons.coordinates))
    if len(odd):
        p = int(odd[0])
        problem = f"has an odd number of coordinates ({int(lengths[p])})"
    elif len(bad_values):
        p = int(np.searchsorted(polygons.polygon_offsets, bad_values[0], side="right") - 1)
        problem = "has a non-finite coordinate"
    else:
        return
    a = int(np.searchsorted(polygons.annotation_offsets, p, side="right") - 1)
    j = p - int(polygons.annotation_offsets[a])
    raise record_error(source, "annotations", a, int(ann_ids[a]),
                       f"'segmentation' polygon {j} {problem}")
