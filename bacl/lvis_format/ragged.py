"""A sequence of variable-length int64 rows kept in two flat arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np


class RaggedArray(Sequence):
    """``N`` rows of int64 values: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Two numpy arrays instead of ``N`` Python objects: reading a row in a forked
    DataLoader worker touches no Python reference counts, so the worker does not copy
    the memory pages that hold the index.

    Args:
        values: ``(T,)`` int64, all rows one after the other.
        offsets: ``(N + 1,)`` int64, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == T``.

    Indexing with an int gives a read-only ``(n_i,)`` int64 view; with a slice, a list
    of such views. ``values`` and ``offsets`` are exposed for vectorised callers.
    """

    __slots__ = ("values", "offsets")

    def __init__(self, *, values: np.ndarray, offsets: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or values.ndim != 1:
            raise ValueError(f"values must be (T,) and offsets (N + 1,), got {values.shape} "
                             f"and {offsets.shape}")
        if offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any():
            raise ValueError(f"offsets must rise from 0 to len(values) = {len(values)}")
        values.flags.writeable = False
        offsets.flags.writeable = False
        self.values = values
        self.offsets = offsets

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> "RaggedArray":
        """Rows of ``lengths`` ``(N,)`` values each, taken in order from ``values``."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(values=values, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getstate__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values, self.offsets

    def __setstate__(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        # Unpickled arrays (e.g. in spawned DataLoader workers) come back writeable.
        self.__init__(values=state[0], offsets=state[1])

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = int(np.int64(index)) if isinstance(index, np.integer) else index
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"row index must be an int or a slice, got {type(index).__name__}")
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        i %= n
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """``(N,)`` int64, the length of each row."""
        return np.diff(self.offsets)

    def row_index(self) -> np.ndarray:
        """``(T,)`` int64, the row each value belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rows={len(self)}, values={len(self.values)})"
