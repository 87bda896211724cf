"""The packed encoding of a block's ratings and its sort order, without Spark."""

from __future__ import annotations

import numpy as np
import pytest


def test_sort_order_is_the_three_key_order_with_and_without_repeated_pairs():
    from mfspark.core.packing import sort_order

    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 50, 5000), rng.integers(0, 2**31 - 1, 5000)
    ratings = rng.integers(1, 11, 5000) / 2.0
    for r, c in ((rows, cols), (rows, cols % 7)):  # unique pairs; then many repeated pairs
        order = sort_order(r, c, ratings)
        np.testing.assert_array_equal(order, np.lexsort((ratings, c, r)))


@pytest.mark.parametrize("cols_max, ratings, rating_bytes", [
    (65_535, np.array([1, 4.5, 5, 0, 127.5, 3]), 1),  # star ratings: one byte each
    (65_536, np.array([1, 4.25, 5, 0, -2, 3]), 4),  # quarter stars, negative: float32
    (70_000, np.array([1, 4.1, 5, 0, 128, 3]), 8),  # 4.1 is not a float32: float64
])
def test_packed_chunk_encoding_round_trips_exactly(cols_max, ratings, rating_bytes):
    from mfspark.core.packing import decode, encode

    rows = np.array([2, 2, 5, 9, 9, 9], dtype=np.int32)
    cols = np.array([0, cols_max, 7, 1, 3, cols_max], dtype=np.int32)
    packed = encode(rows, cols, ratings)
    assert len(packed[0]) == 4 * 2 * 3  # three distinct rows: (row, count) pairs
    assert len(packed[1]) == (2 if cols_max < 65_536 else 4) * len(cols)
    assert len(packed[2]) == rating_bytes * len(ratings)
    r, c, v = decode(len(rows), *packed)
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)
    assert c.dtype == np.int32  # never uint16: differences of indices must not wrap
    np.testing.assert_array_equal(np.asarray(v, np.float64), ratings)
    with pytest.raises(ValueError, match="a packed chunk of 7 ratings decodes to 6 rows"):
        decode(7, *packed)
