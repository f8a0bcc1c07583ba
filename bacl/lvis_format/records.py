"""The LVIS annotation format (v0.5, v1 and the synthetic benchmark) as typed records.

These types are the one definition of the format: ``msgspec`` checks every record
against them while it parses (no Python dict per record is built) and skips the keys
no reader needs. Keys that only some readers need are optional here; a reader states
what it needs with :data:`bacl.lvis_format.reader.TRAINING_KEYS` /
:data:`bacl.lvis_format.reader.EVALUATION_KEYS`. Checks between records (unique ids,
references, box values) live in :mod:`bacl.lvis_format.tables`.

Reference: cocodataset/lvis-api ``lvis/lvis.py`` (the keys its loader and evaluator
read).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

# LVIS frequency bins: rare (1-10 training images), common (11-100), frequent (>100).
FREQUENCIES = ("r", "c", "f")
REQUIRED_TOP_LEVEL_KEYS = ("images", "annotations", "categories")

Frequency = Literal["r", "c", "f"]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Image(msgspec.Struct, kw_only=True, gc=False):
    """One ``images`` record. ``neg_category_ids``: categories verified absent;
    ``not_exhaustive_category_ids``: categories not exhaustively annotated."""

    id: int
    height: Union[PositiveInt, Unset] = UNSET
    width: Union[PositiveInt, Unset] = UNSET
    file_name: Union[str, Unset] = UNSET
    coco_url: Union[str, Unset] = UNSET
    neg_category_ids: Union[list[int], Unset] = UNSET
    not_exhaustive_category_ids: Union[list[int], Unset] = UNSET


class Annotation(msgspec.Struct, kw_only=True, gc=False):
    """One ``annotations`` record, without its ``segmentation`` (which is not read).

    ``bbox`` is ``[x, y, width, height]`` in pixels; ``area`` is the mask area in
    LVIS. lvis-api honours an ``ignore`` key when present (any truthy value).
    """

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: Union[float, Unset] = UNSET
    ignore: Any = 0


class AnnotationWithSegmentation(Annotation, kw_only=True, gc=False):
    """An ``annotations`` record whose ``segmentation`` is kept as raw JSON text, to be
    read in batches into flat arrays (:mod:`bacl.lvis_format.polygons`)."""

    segmentation: msgspec.Raw = msgspec.Raw()


class Category(msgspec.Struct, kw_only=True, gc=False):
    """One ``categories`` record (the file's dict is kept too, with every key)."""

    id: int
    name: str
    frequency: Union[Frequency, Unset] = UNSET
    image_count: Union[int, None, Unset] = UNSET


class LVISFile(msgspec.Struct, kw_only=True):
    """A whole file, segmentations skipped. Categories stay dicts (1-2 thousand of
    them), checked against :class:`Category` separately so that every key is kept."""

    images: list[Image]
    annotations: list[Annotation]
    categories: list[dict[str, Any]]


class LVISFileWithSegmentation(msgspec.Struct, kw_only=True):
    """:class:`LVISFile` whose annotations keep their ``segmentation``."""

    images: list[Image]
    annotations: list[AnnotationWithSegmentation]
    categories: list[dict[str, Any]]


# A segmentation: polygons ``[[x1, y1, x2, y2, ...], ...]``, an RLE object, or null.
Segmentation = Union[list[list[float]], dict[str, Any], None]
