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
    from mfspark.core.packing import decode_chunk as decode
    from mfspark.core.packing import encode_chunk as encode

    rows = np.array([2, 2, 5, 2**40, 2**40, 2**40], dtype=np.int64)  # keys: any long
    cols = np.array([0, cols_max, 7, 1, 3, cols_max], dtype=np.int32)
    packed = encode(rows, cols, ratings)
    assert len(packed[0]) == 12 * 3  # three distinct rows: (key, count) pairs
    assert len(packed[1]) == (2 if cols_max < 65_536 else 4) * len(cols)
    assert len(packed[2]) == rating_bytes * len(ratings)
    r, c, v = decode(len(rows), *packed)
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)
    assert c.dtype == np.int32  # never uint16: differences of indices must not wrap
    np.testing.assert_array_equal(np.asarray(v, np.float64), ratings)
    with pytest.raises(ValueError, match="a packed chunk of 7 ratings decodes to 6 rows"):
        decode(7, *packed)


def test_held_out_positions_and_factor_blobs_round_trip():
    from mfspark.core.packing import (decode_factors, decode_positions, encode_factors,
                                      encode_positions)

    rows, cols = np.array([3, -1, 0]), np.array([-1, 2, 70_000])
    r, c, v = decode_positions(3, *encode_positions(rows, cols, np.array([1.0, 2.5, 4.0])))
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)  # -1 (unknown) survives: int32, not uint16
    np.testing.assert_array_equal(v, [1.0, 2.5, 4.0])
    rng = np.random.default_rng(0)
    keys, bias, factors = np.array([5, -2, 2**50]), rng.standard_normal(3), \
        rng.standard_normal((3, 4))
    k, b, f = decode_factors(encode_factors(keys, bias, factors))
    np.testing.assert_array_equal(k, keys)
    np.testing.assert_array_equal(b, bias)
    np.testing.assert_array_equal(f, factors)
    blob = encode_factors(keys, bias, factors, value_bytes=4)
    assert len(blob) == 24 + 16 * 3 + 4 * 12  # float32 factors, float64 biases
    _, b, f = decode_factors(blob)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, factors.astype(np.float32))
    np.testing.assert_array_equal(b, bias)
    with pytest.raises(ValueError, match="the factor files are damaged"):
        decode_factors(blob[:-4])


def test_seeded_factors_are_a_function_of_key_and_seed():
    """A row's start depends on its key and the seed only: the same key gives the same
    vector in any batch, order or process; the compiled and NumPy twins agree; entries are
    N(0, 1/rank)."""
    import os

    from mfspark.core.state import init_factors, seeded_factors

    keys = np.array([7, 2**40, -3, 0, 7])
    a = seeded_factors(keys, 6, seed=11)
    np.testing.assert_array_equal(a[0], a[4])
    np.testing.assert_array_equal(seeded_factors(keys[::-1], 6, 11)[::-1], a)
    np.testing.assert_array_equal(seeded_factors(keys[1:2], 6, 11)[0], a[1])
    assert not np.allclose(seeded_factors(keys, 6, 12), a)
    os.environ["MFSPARK_KERNEL"] = "python"
    try:
        np.testing.assert_allclose(seeded_factors(keys, 6, 11), a, rtol=1e-12, atol=1e-15)
    finally:
        del os.environ["MFSPARK_KERNEL"]
    big = init_factors(20_000, 8, 0)
    np.testing.assert_array_equal(big[:5], seeded_factors(np.arange(5), 8, 0))
    assert abs(big.std() * np.sqrt(8) - 1) < 0.01 and abs(big.mean()) < 0.01
