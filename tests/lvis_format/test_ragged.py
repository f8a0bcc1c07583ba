"""RaggedArray: rows of a flat array, read-only, a Sequence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bacl.lvis_format import RaggedArray


def test_rows_views_and_sequence_protocol():
    rows = RaggedArray.from_lengths(np.array([1, 2, 5, 3]), np.array([2, 0, 1, 1]))
    assert isinstance(rows, Sequence) and len(rows) == 4
    assert [r.tolist() for r in rows] == [[1, 2], [], [5], [3]]
    assert rows[-1].tolist() == [3] and rows[np.int64(2)].tolist() == [5]
    assert [r.tolist() for r in rows[1:3]] == [[], [5]]
    assert rows[0].dtype == np.int64
    with pytest.raises(ValueError):
        rows[0][0] = 9  # a read-only view of the shared values
    assert rows.lengths().tolist() == [2, 0, 1, 1]
    assert rows.row_index().tolist() == [0, 0, 2, 3]
    with pytest.raises(IndexError, match="out of range"):
        rows[4]
    with pytest.raises(TypeError):
        rows[1.0]


def test_empty():
    rows = RaggedArray.from_lengths(np.zeros(0), np.zeros(0, np.int64))
    assert len(rows) == 0 and list(rows) == [] and rows.row_index().shape == (0,)


@pytest.mark.parametrize("values, offsets", [([1, 2], [0, 1]), ([1], [1, 1]), ([1, 2], [0, 2, 1, 2])])
def test_bad_offsets(values, offsets):
    with pytest.raises(ValueError, match="offsets"):
        RaggedArray(values=np.array(values), offsets=np.array(offsets))


def test_pickling_keeps_rows_and_read_only_views():
    import pickle

    rows = pickle.loads(pickle.dumps(RaggedArray.from_lengths(np.arange(5), np.array([3, 2]))))
    assert [r.tolist() for r in rows] == [[0, 1, 2], [3, 4]]
    assert not rows[0].flags.writeable
