"""What every params section is: a frozen pydantic model with typed, described keys.

Each key is declared once, with its type, range, default and a one-line description;
the description is what ``bacl params`` prints as the comment beside the key in a
rendered ``params.yaml``. Validation errors become one :class:`ParamError` naming the
dotted key (``classifier.fhm.decay: must be <= 1, got 1.5``), with a suggestion for a
misspelt key.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Iterable

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt, StrictStr

from ..errors import BaclError


class ParamError(BaclError, ValueError):
    """A wrong parameter: the message starts with the source and the dotted key."""


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, got a boolean")
    return value


# Strict types: YAML's `true` is no integer and `"3"` no count. Floats accept integers and
# the strings YAML leaves unconverted ("1e-4" has no dot, so YAML 1.1 reads it as text).
Int = StrictInt
Bool = StrictBool
Str = StrictStr
Float = Annotated[float, BeforeValidator(_reject_bool)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _dotted(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys of the section at ``loc`` (the location of an unknown key's parent)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


_RANGES = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
_TYPES = {"int_type": "an integer", "int_parsing": "an integer", "bool_type": "true or false",
          "bool_parsing": "true or false", "float_type": "a number", "float_parsing": "a number",
          "string_type": "a string", "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
          "model_attributes_type": "a mapping"}


def describe_error(root: type[BaseModel], error: dict[str, Any]) -> str:
    """One pydantic error as ``dotted.key: problem``."""
    loc = tuple(error["loc"])
    kind = error["type"]
    key = _dotted(loc)
    got = error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{key}: unknown key{hint}; known keys here: {known}"
    if kind == "missing":
        return f"{key}: missing"
    if kind in _RANGES:
        symbol, name = _RANGES[kind]
        bound = error["ctx"][name]
        return f"{key}: must be {symbol} {bound:g}, got {got!r}"
    if kind in _TYPES:
        return f"{key}: must be {_TYPES[kind]}, got {got!r}"
    if kind == "literal_error":
        return f"{key}: must be one of {error['ctx']['expected']}, got {got!r}"
    message = error["msg"].removeprefix("Value error, ")
    # A section's own checks name the key they concern first: "max_size: must be ...".
    sub = re.match(r"^([A-Za-z_][\w.]*): ", message)
    if sub:
        key = f"{key}.{sub.group(1)}" if key else sub.group(1)
        message = message[sub.end():]
    return f"{key}: {message}" if key else message


def validation_error(root: type[BaseModel], err: pydantic.ValidationError, *, source: str) -> ParamError:
    """The first problem of ``err`` as a :class:`ParamError` starting with ``source``."""
    first = err.errors(include_url=False)[0]
    return ParamError(f"{source}: {describe_error(root, first)}")
