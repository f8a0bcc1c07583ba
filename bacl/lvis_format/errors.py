"""The error an unusable LVIS-format file raises."""

from __future__ import annotations

from bacl.errors import BaclError


class AnnotationError(BaclError, ValueError):
    """An annotation file that cannot be used as it is.

    The message names the file (or "annotations" for an in-memory dict) and the record
    (section, index and id), the key, or the JSON line and column at fault.
    """
