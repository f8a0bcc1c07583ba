"""Resolved parameters as a commented ``params.yaml``: every key with its description.

``bacl preset NAME`` writes this; ``params.yaml`` in the repository is the rendering of
the built-in defaults (a test keeps them equal), so the file a user edits documents
itself from the one place each key is declared.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from .root import Params

COMMENT_COLUMN = 34

HEADER = """\
# Parameters of a bacl run. Written by `bacl preset {preset}`; every key is described beside it.
# Read by `bacl <command>` (override one with --set section.key=value) and by the DVC pipeline
# (dvc.yaml): edit a value and `dvc repro`, or `dvc exp run -S section.key=value`.
# A wrong key or value stops the command with a message naming the key.
"""


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _lines(model: BaseModel, indent: int) -> list[str]:
    out: list[str] = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        note = f"  # {field.description}" if field.description else ""
        if isinstance(value, BaseModel):
            if not type(value).model_fields:
                out.append(f"{pad}{name}: {{}}".ljust(COMMENT_COLUMN) + note)
                continue
            out.append(f"{pad}{name}:".ljust(COMMENT_COLUMN) + note)
            out.extend(_lines(value, indent + 1))
        else:
            out.append(f"{pad}{name}: {_scalar(value)}".ljust(COMMENT_COLUMN) + note)
        if indent == 0 and isinstance(value, BaseModel):
            out.append("")
    return out


def render_params(params: Params, *, preset: str = "synthetic") -> str:
    """``params`` as YAML text with a comment per key; loads back to the same values."""
    body = "\n".join(line.rstrip() for line in _lines(params, 0)).rstrip() + "\n"
    return HEADER.format(preset=preset) + "\n" + body
