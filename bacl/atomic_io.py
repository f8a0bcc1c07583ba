"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Everything the project writes that a later step reads (checkpoints, annotation jsons,
detections, metrics) goes through here: the bytes go to a temporary file in the same
folder, are flushed to disk, and the file is renamed over the target. A failure at any
point leaves the previous file untouched and no temporary file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide outputs from others
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    """Serialise first (a value JSON cannot hold fails before the disk is touched), then write."""
    data = json.dumps(obj, **dumps_kwargs).encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
