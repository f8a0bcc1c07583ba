"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from typing import Callable


def time_method(owner: object, name: str, add: Callable[[float], None]) -> None:
    """Wrap ``owner.name`` so that each call reports its wall time in seconds to ``add``.

    The wrapper is an instance attribute, so it shadows the class's method for this
    object only.
    """
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        tic = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            add(time.perf_counter() - tic)

    setattr(owner, name, timed)
