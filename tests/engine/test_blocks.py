"""The ratings packed by block: one block per partition, every rating once, sorted and
exact, IDs looked up or joined to the same blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark.config import ALSParams
from mfspark.data.prepare import partition_ids
from mfspark.engine.loop import partition

from conftest import indexed_frame, random_ratings


def test_half_steps_group_by_block_without_reshuffling(spark):
    from mfspark.engine.blocks import partition_ratings

    users, items, ratings = random_ratings(20, 10, 0.3, seed=1)
    blocks, by_item = partition_ratings(indexed_frame(spark, users, items, ratings), 4, 3)
    by_item.unpersist()
    try:
        plan = blocks.groupBy("block").count()._jdf.queryExecution().executedPlan().toString()
        top = plan.split("InMemoryRelation")[0]  # the part above the cached, partitioned data
        assert "Exchange" not in top, plan
        per_partition = blocks.rdd.mapPartitions(lambda rows: [len({r.block for r in rows})])
        assert max(per_partition.collect()) == 1  # one block per partition, none split
    finally:
        blocks.unpersist()


def test_packed_copies_hold_every_rating_once_sorted_and_exact(spark):
    """Both packed copies hold exactly the input triples; each block is sorted by row and
    cut into chunks; ratings that are not exact float32 values are kept as float64."""
    from mfspark.engine.blocks import partition_ratings, unpack

    users, items, ratings = random_ratings(30, 12, 0.4, seed=2)
    ratings = ratings.astype(np.float64)
    ratings[::5] += 0.1  # 3.6 etc.: not representable in float32
    expected = sorted(zip(users.tolist(), items.tolist(), ratings.tolist()))
    # chunks of 7 ratings: several per block
    by_user, by_item = partition_ratings(indexed_frame(spark, users, items, ratings), 3, 2,
                                         chunk_ratings=7)
    try:
        for packed, swap in ((by_user, False), (by_item, True)):
            chunks = packed.toPandas()
            assert chunks["n"].sum() == len(expected)
            assert chunks.groupby("block")["chunk"].nunique().max() > 1
            got = []
            for _, block in chunks.groupby("block"):
                rows, cols, vals = unpack(block)
                assert np.all(np.diff(rows) >= 0)  # sorted by row within the block
                assert len(set(rows % packed.rdd.getNumPartitions())) == 1
                got += list(zip(*((cols, rows) if swap else (rows, cols)),
                                np.asarray(vals, np.float64)))
            assert sorted((int(a), int(b), float(c)) for a, b, c in got) == expected
    finally:
        by_user.unpersist()
        by_item.unpersist()


def test_id_lookup_packs_what_the_joins_pack(spark):
    """Integral IDs looked up in the partitioning pass give the same packed copies (same
    chunks, bytes and checksums) as joining the ratings to their indices; string IDs are
    joined."""
    from mfspark.data.indexing import build_index, id_lookup, with_indices

    users, items, ratings = random_ratings(40, 25, 0.3, seed=4)
    raw = spark.createDataFrame(pd.DataFrame({
        "user": 10_000_000_000 - 7 * users.astype(np.int64),  # sparse, descending long IDs
        "item": (3 * items + 5).astype(np.int32), "rating": ratings.astype(np.float64)}))
    u_index, i_index = build_index(spark, raw, "user"), build_index(spark, raw, "item")
    lookup = id_lookup(u_index, i_index)
    assert lookup is not None and len(lookup[0]) == len(set(users.tolist()))
    params = ALSParams(rank=2, num_user_blocks=3, num_item_blocks=2)
    looked = partition_ids(raw, u_index, i_index, params)
    joined = partition(with_indices(raw, u_index, i_index), u_index.counts, i_index.counts,
                           params)
    try:
        for a, b in ((looked.by_user, joined.by_user), (looked.by_item, joined.by_item)):
            pa_, pb = (x.toPandas().sort_values(["block", "chunk"]).reset_index(drop=True)
                       for x in (a, b))
            pd.testing.assert_frame_equal(pa_, pb)
        assert (looked.count, looked.checksum, looked.mu) == (joined.count, joined.checksum,
                                                              joined.mu)
    finally:
        looked.unpersist()
        joined.unpersist()
    strings = raw.withColumn("user", raw["user"].cast("string"))
    assert id_lookup(build_index(spark, strings, "user"), i_index) is None


@pytest.mark.parametrize("ids", [[3, 8, 20], [3, 5, 8, 10, 12, 20]])  # search, table
def test_unknown_id_in_the_lookup_is_a_named_error(ids):
    """Sparse IDs are found by binary search, dense-ish ones in a direct table: the same
    indices, and the same error for an ID in a gap, below or above the range."""
    from mfspark.engine.blocks import dense_index

    ids = np.array(ids, dtype=np.int64)
    expected = [int(np.searchsorted(ids, v)) for v in (20, 3, 8, 8)]
    assert dense_index(ids, np.array([20, 3, 8, 8]), "user").tolist() == expected
    with pytest.raises(ValueError, match=r"item ID 9 is not in the item index \(2 ratings"):
        dense_index(ids, np.array([3, 9, 21]), "item")
    for unknown in (2, -7, 21, 2**40):
        with pytest.raises(ValueError, match=f"user ID {unknown} is not in the user index"):
            dense_index(ids, np.array([8, unknown]), "user")


def test_partitioning_batch_size_is_scoped_and_respects_the_users_setting(spark):
    from mfspark.engine.blocks import PARTITION_ARROW_BATCH, arrow_batch_size

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
