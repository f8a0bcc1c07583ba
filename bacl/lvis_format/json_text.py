"""Reading JSON files as bytes, and saying where and why a file is not valid JSON.

Shared by the annotation reader and the evaluator's results reader, so both report a
bad file the same way: the path, the line and column, and a hint when the file ends
early (an interrupted download or copy).
"""

from __future__ import annotations

import json
import os
import re

import msgspec

from bacl.errors import MissingFileError

_BOM = b"\xef\xbb\xbf"
_BYTE_OFFSET = re.compile(r"\s*\(byte (\d+)\)\s*$")
# JSON numbers Python's json reads but JSON (and msgspec) does not.
NON_FINITE_LITERALS = (b"NaN", b"Infinity", b"-Infinity")


def read_json_bytes(path: str | os.PathLike, *, what: str = "annotation file") -> bytes:
    """The bytes of ``path`` without a UTF-8 byte-order mark; a missing file names itself."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise MissingFileError(f"{what} {os.fspath(path)} does not exist") from e
    return data[len(_BOM):] if data.startswith(_BOM) else data


def error_offset(error: Exception, data: bytes) -> int:
    """Byte offset of a ``msgspec.DecodeError``; the end of ``data`` when it was truncated."""
    match = _BYTE_OFFSET.search(str(error))
    return int(match.group(1)) if match else len(data)


def starts_non_finite_literal(data: bytes, offset: int) -> bool:
    """Whether ``data`` holds ``NaN`` / ``Infinity`` / ``-Infinity`` at ``offset``."""
    return any(data.startswith(token, offset) for token in NON_FINITE_LITERALS)


def syntax_error_message(data: bytes, error: Exception, *, source: str,
                         expected: str = "an annotation JSON") -> str:
    """One line for a file ``msgspec`` could not parse (a ``DecodeError`` or the
    ``UnicodeDecodeError`` it raises on bad UTF-8 inside a string)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the end of the file is a truncation, not binary.
        if e.reason != "unexpected end of data":
            return f"{source}: not UTF-8 text (byte offset {e.start}); is this {expected}?"
    offset = min(error_offset(error, data), len(data))
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    reason = _BYTE_OFFSET.sub("", str(error)).removeprefix("JSON is malformed: ")
    if reason == "Input data was truncated":
        reason = "the text ends inside a JSON value"
    truncated = offset >= len(data) or not data[offset:].strip()
    return f"{source}: invalid JSON at line {line}, column {column}: {reason}" + _hint(truncated)


def python_json_error_message(error: json.JSONDecodeError, *, source: str) -> str:
    """The same line for an error of Python's ``json`` (positions in characters)."""
    truncated = error.msg.startswith("Unterminated string") or not error.doc[error.pos:].strip()
    return (f"{source}: invalid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}" + _hint(truncated))


def _hint(truncated: bool) -> str:
    return " (unexpected end of file: the file looks truncated)" if truncated else ""


def json_type_name(raw: bytes | msgspec.Raw) -> str:
    """The Python type name ``json.loads`` would give the JSON value ``raw``."""
    text = bytes(raw).lstrip()
    first = text[:1]
    if first == b"{":
        return "dict"
    if first == b"[":
        return "list"
    if first == b'"':
        return "str"
    if first in (b"t", b"f"):
        return "bool"
    if first == b"n":
        return "NoneType"
    token = text.split(b",", 1)[0]
    return "float" if any(c in token for c in b".eEIN") else "int"
