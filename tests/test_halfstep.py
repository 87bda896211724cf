"""Skew: one user with 200K of 1M ratings trains with every block inside its memory bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark import als
from mfspark.config import ALSParams
from mfspark.halfstep import memory_probe
from mfspark.solve import block_memory_bound

N_RATINGS, HEAVY, N_ITEMS = 1_000_000, 200_000, 200_000


def skewed_ratings(seed: int = 0) -> pd.DataFrame:
    """User 0 rates 200K distinct items; 20K other users rate 40 items each (1M in all)."""
    rng = np.random.default_rng(seed)
    others = N_RATINGS - HEAVY
    users = np.concatenate([np.zeros(HEAVY, np.int32),
                            np.repeat(np.arange(1, others // 40 + 1, dtype=np.int32), 40)])
    items = np.concatenate([rng.permutation(N_ITEMS).astype(np.int32),
                            rng.integers(0, N_ITEMS, others, dtype=np.int32)])
    return pd.DataFrame({"user_idx": users, "item_idx": items,
                         "rating": rng.integers(1, 11, N_RATINGS) / 2.0})


def test_skewed_user_trains_within_the_block_memory_bound(spark, tmp_path):
    pdf = skewed_ratings()
    assert len(pdf) == N_RATINGS and (pdf.user_idx == 0).sum() == HEAVY
    params = ALSParams(rank=4, reg=0.1, iterations=2, num_user_blocks=4, num_item_blocks=4,
                       block_memory_mb=8)
    user_counts = np.bincount(pdf.user_idx)
    item_counts = np.bincount(pdf.item_idx, minlength=N_ITEMS)
    parts = als.partition(spark.createDataFrame(pdf), user_counts, item_counts, params)
    probe = memory_probe(spark)
    try:
        fitted = als.fit(parts, params, str(tmp_path), probe=probe)
    finally:
        parts.unpersist()
    assert np.isfinite(fitted.users.factors).all() and fitted.history[-1]["train_rmse"] < 2
    blocks = probe.value
    assert len(blocks) == 2 * (4 + 4)  # every block of every half-step was measured
    assert sum(n for n, _, _ in blocks) == 2 * 2 * N_RATINGS
    for n, rows, peak in blocks:
        assert peak <= block_memory_bound(n, rows, params.rank, params.block_memory_mb), \
            (n, rows, peak)
    heavy = max(blocks, key=lambda b: b[0])
    assert heavy[0] >= HEAVY  # the heavy user's block was among them
    print(f"heaviest block: {heavy[0]} ratings, {heavy[1]} rows, peak {heavy[2] / 2**20:.1f} "
          f"MiB <= bound {block_memory_bound(heavy[0], heavy[1], 4, 8) / 2**20:.1f} MiB; "
          f"max peak of all blocks {max(b[2] for b in blocks) / 2**20:.1f} MiB")


def test_sort_order_is_the_three_key_order_with_and_without_repeated_pairs():
    from mfspark.halfstep import sort_order

    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 50, 5000), rng.integers(0, 2**31 - 1, 5000)
    ratings = rng.integers(1, 11, 5000) / 2.0
    for r, c in ((rows, cols), (rows, cols % 7)):  # unique pairs; then many repeated pairs
        order = sort_order(r, c, ratings)
        np.testing.assert_array_equal(order, np.lexsort((ratings, c, r)))


def test_partitioning_batch_size_is_scoped_and_respects_the_users_setting(spark):
    from mfspark.halfstep import PARTITION_ARROW_BATCH, arrow_batch_size

    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    assert spark.conf.get(key, None) is None
    with arrow_batch_size(spark, 1 << 20):
        assert spark.conf.get(key) == str(PARTITION_ARROW_BATCH)
    assert spark.conf.get(key, None) is None
    spark.conf.set(key, "777")
    try:
        with arrow_batch_size(spark, 1 << 20):
            assert spark.conf.get(key) == "777"
        assert spark.conf.get(key) == "777"
    finally:
        spark.conf.unset(key)


@pytest.mark.parametrize("cols_max, ratings, rating_bytes", [
    (65_535, np.array([1, 4.5, 5, 0, 127.5, 3]), 1),  # star ratings: one byte each
    (65_536, np.array([1, 4.25, 5, 0, -2, 3]), 4),  # quarter stars, negative: float32
    (70_000, np.array([1, 4.1, 5, 0, 128, 3]), 8),  # 4.1 is not a float32: float64
])
def test_packed_chunk_encoding_round_trips_exactly(cols_max, ratings, rating_bytes):
    from mfspark.halfstep import decode, encode

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
