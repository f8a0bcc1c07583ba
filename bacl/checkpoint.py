"""Atomic checkpoint writing and safe (``weights_only``) loading.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(weights_only=True)``: a checkpoint from elsewhere cannot run code.
Writes go to a temporary file in the same folder, are flushed to disk and then renamed
over the target, so an interrupted save never leaves a half-written checkpoint and never
destroys the previous one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic_io import atomic_write
from .errors import BaclError

FORMAT_VERSION = 1


class CheckpointError(BaclError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save ``state`` (plus a format version) with ``torch.save``."""
    state = {"format_version": FORMAT_VERSION, **state}
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, wrong format
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a bacl checkpoint (no 'model' entry)")
    return state
