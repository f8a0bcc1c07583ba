"""Read an LVIS-format annotation file once, fast, into :class:`LVISTables`.

The fast path decodes the file with ``msgspec`` straight into the typed records of
:mod:`bacl.lvis_format.records` (validated while parsing, segmentations skipped unless
asked for) and builds column arrays from them. Only when that fails does the slow
path run, to say which record is wrong and why: ``msgspec`` names the JSON path of
the first problem, and that one record is re-read with Python's ``json`` and checked
by :mod:`bacl.lvis_format.diagnosis`. A file Python's ``json`` reads but JSON does
not allow (``NaN`` / ``Infinity`` literals, as ``json.dump`` writes for non-finite
floats) is read with Python's ``json`` instead, so that the record holding the
non-finite number is named; that is slower and takes more memory, but only that
broken file pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Collection, Mapping
from typing import Any, Union

import msgspec

from bacl.lvis_format.diagnosis import check_record, check_top_level
from bacl.lvis_format.errors import AnnotationError
from bacl.lvis_format.json_text import (error_offset, json_type_name, python_json_error_message,
                                        read_json_bytes, starts_non_finite_literal,
                                        syntax_error_message)
from bacl.lvis_format.polygons import polygons_from_raw, polygons_from_records
from bacl.lvis_format.records import (REQUIRED_TOP_LEVEL_KEYS, LVISFile,
                                      LVISFileWithSegmentation)
from bacl.lvis_format.tables import (ANNOTATION_AREA, CATEGORY_FREQUENCY, IMAGE_HEIGHT,
                                     IMAGE_LOCATION, IMAGE_NEG_CATEGORY_IDS,
                                     IMAGE_NOT_EXHAUSTIVE_CATEGORY_IDS, IMAGE_WIDTH,
                                     LVISTables, build_tables)

PathLike = Union[str, os.PathLike]

# What training needs of every record: the image size and where its file lies.
TRAINING_KEYS = (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_LOCATION)
# What LVIS evaluation needs: the federated lists, mask areas and frequency bins.
EVALUATION_KEYS = (IMAGE_NEG_CATEGORY_IDS, IMAGE_NOT_EXHAUSTIVE_CATEGORY_IDS,
                   ANNOTATION_AREA, CATEGORY_FREQUENCY)

_RECORD_PATH = re.compile(r"at `\$\.(images|annotations|categories)\[(\d+)\]")


def read_lvis(annotations: PathLike | Mapping[str, Any], *, source: str | None = None,
              require: Collection[str] = (), segmentation: bool = False) -> LVISTables:
    """Read and check an LVIS v0.5 / v1 (or synthetic) annotation file.

    Args:
        annotations: the JSON file, or its content already loaded (a dict of plain
            JSON types, as ``json.load`` returns).
        source: the name messages use; the path, or "annotations" for a dict.
        require: keys that must be in every record, from
            :data:`bacl.lvis_format.tables.REQUIRABLE_KEYS` (e.g. :data:`TRAINING_KEYS`,
            :data:`EVALUATION_KEYS`).
        segmentation: also read the annotations' ``segmentation`` into
            ``tables.polygons`` (and check it); otherwise it is skipped unread.

    Raises:
        AnnotationError: the file is not valid JSON (line and column), not UTF-8, or
            breaks a rule of the format (file, section, index, id and key).
        bacl.errors.MissingFileError: the file does not exist.
    """
    if isinstance(annotations, Mapping):
        name = source or "annotations"
        try:
            content = msgspec.convert(annotations, LVISFile)
        except msgspec.ValidationError as err:
            _diagnose_dict(annotations, err, name)
            raise AnnotationError(f"{name}: not a valid LVIS annotation file: {err}") from err
        records = annotations["annotations"]
    elif isinstance(annotations, (str, os.PathLike)):
        name = source or os.fspath(annotations)
        data = read_json_bytes(annotations)
        schema = LVISFileWithSegmentation if segmentation else LVISFile
        try:
            content = msgspec.json.decode(data, type=schema)
        except msgspec.ValidationError as err:
            _diagnose_file(data, err, name)
            raise AnnotationError(f"{name}: not a valid LVIS annotation file: {err}") from err
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            if starts_non_finite_literal(data, error_offset(err, data)):
                try:
                    loaded = json.loads(data)
                except json.JSONDecodeError as late:  # broken further on as well
                    raise AnnotationError(python_json_error_message(late, source=name)) from late
                del data
                return read_lvis(loaded, source=name, require=require,
                                 segmentation=segmentation)
            raise AnnotationError(syntax_error_message(data, err, source=name)) from err
        del data
        records = None
    else:
        raise TypeError(f"annotations must be a path or a dict, got {type(annotations).__name__}")

    tables = build_tables(images=content.images, annotations=content.annotations,
                          categories=content.categories, source=name, require=require)
    if not segmentation:
        return tables
    if records is None:
        raws = [a.segmentation for a in content.annotations]
        del content
        polygons = polygons_from_raw(raws, ann_ids=tables.ann_ids, source=name)
    else:
        polygons = polygons_from_records(records, ann_ids=tables.ann_ids, source=name)
    return dataclasses.replace(tables, polygons=polygons)


def _diagnose_dict(data: Any, err: msgspec.ValidationError, source: str) -> None:
    """Raise the record-level error behind ``err`` for an in-memory file, if found."""
    check_top_level(data, source)
    located = _RECORD_PATH.search(str(err))
    if located:
        section, index = located.group(1), int(located.group(2))
        check_record(section, index, data[section][index], source)


def _diagnose_file(data: bytes, err: msgspec.ValidationError, source: str) -> None:
    """Raise the record-level error behind ``err`` for a file, re-reading only the
    top level and the one record ``err`` points at."""
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        check_top_level(None, source, type_name=json_type_name(data))
        return
    stub = {key: None for key in top}
    for key in REQUIRED_TOP_LEVEL_KEYS:
        if key in top:
            raw = top[key]
            stub[key] = [] if json_type_name(raw) == "list" else json.loads(bytes(raw))
    check_top_level(stub, source)
    located = _RECORD_PATH.search(str(err))
    if located:
        section, index = located.group(1), int(located.group(2))
        section_records = msgspec.json.decode(top[section], type=list[msgspec.Raw])
        check_record(section, index, json.loads(bytes(section_records[index])), source)
