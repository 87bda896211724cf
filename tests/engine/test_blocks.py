"""The ratings packed by block: one block per partition, every rating once, sorted and
exact; needs, held-out ratings and routing requests in place; and half-steps that never
move the packed ratings, whichever way the fixed side arrives."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.config import ALSParams
from mfspark.core.packing import block_of, decode_chunk, decode_keys, decode_positions
from mfspark.engine.blocks import (NEEDS, REQUEST, TEST, TRAIN, Layout, block_labels,
                                   needs_of)
from mfspark.engine.loop import partition

from conftest import indexed_frame, random_ratings


def frame_with_test(spark, train, test):
    from pyspark.sql import functions as F

    return (indexed_frame(spark, *train).withColumn("test", F.lit(False))
            .unionByName(indexed_frame(spark, *test).withColumn("test", F.lit(True))))


def test_packed_copies_hold_every_rating_once_sorted_and_exact(spark):
    """Both copies hold exactly the training triples, each block sorted by row and cut into
    chunks, its columns positions into its sorted needs; ratings that are not exact float32
    values stay float64; each block's rows hash to it."""
    from pyspark.sql import functions as F

    from mfspark.engine.blocks import partition_ratings

    users, items, ratings = random_ratings(30, 12, 0.4, seed=2)
    ratings = ratings.astype(np.float64)
    ratings[::5] += 0.1  # 3.6 etc.: not representable in float32
    expected = sorted(zip(users.tolist(), items.tolist(), ratings.tolist()))
    layouts = tuple(Layout(n, tuple(block_labels(spark, n))) for n in (3, 2))
    frame = indexed_frame(spark, users, items, ratings).withColumn("test", F.lit(False))
    by_user, by_item, stats = partition_ratings(frame, layouts, None, chunk_ratings=7)
    try:
        assert stats[0]["n"] == stats[1]["n"] == len(expected)
        assert (stats[0]["rows"], stats[1]["rows"]) == (30, 12)
        for copy, swap, layout in ((by_user, False, layouts[0]), (by_item, True, layouts[1])):
            rows_ = copy.toPandas()
            for kind in (TRAIN, NEEDS):  # chunked: at most 7 ratings, or keys, per row
                assert rows_[rows_.kind == kind].groupby("block")["chunk"].nunique().max() > 1
            got = []
            for label, block in rows_.groupby("block"):
                needs = needs_of(block)
                assert np.all(np.diff(needs) > 0)
                train = block[block.kind == TRAIN].sort_values("chunk")
                keys = np.concatenate([decode_chunk(int(n), r, c, v)[0] for n, r, c, v in
                                       zip(train.n, train.rows, train.cols, train.ratings)])
                assert np.all(np.diff(keys) >= 0)  # sorted by row within the block
                assert set(layout.label_of(keys).tolist()) == {label}
                for n, r, c, v in zip(train.n, train.rows, train.cols, train.ratings):
                    rk, cp, vals = decode_chunk(int(n), r, c, v)
                    got += list(zip(*((needs[cp], rk) if swap else (rk, needs[cp])),
                                    np.asarray(vals, np.float64)))
            assert sorted((int(a), int(b), float(c)) for a, b, c in got) == expected
    finally:
        by_user.unpersist()
        by_item.unpersist()


def test_held_out_ratings_and_requests_are_where_the_half_steps_look(spark):
    """Held-out ratings sit in the copy of the side solved last (items, for explicit
    ratings), in the block of their item key, with -1 for keys training never saw; every
    block's requests, held by the block they ask, cover exactly its needs."""
    users, items, ratings = random_ratings(25, 15, 0.4, seed=3)
    test = (np.array([0, 1, 99, 98]), np.array([0, 77, 1, 66]), np.array([3.0, 4.0, 5.0, 1.0]))
    params = ALSParams(rank=2, num_user_blocks=3, num_item_blocks=2)
    parts = partition(frame_with_test(spark, (users, items, ratings), test), params,
                      held_out=True)
    try:
        assert parts.num_test == 4 and parts.count == len(ratings)
        by_user, by_item = parts.by_user.toPandas(), parts.by_item.toPandas()
        assert not (by_user.kind == TEST).any()
        seen = []
        for label, block in by_item.groupby("block"):
            needs = needs_of(block)
            for n, r, c, v in block[block.kind == TEST][["n", "rows", "cols", "ratings"]] \
                    .itertuples(index=False):
                rows, cols, vals = decode_positions(int(n), r, c, v)
                seen += [(int(rw >= 0), int(needs[cl]) if cl >= 0 else -1, float(x))
                         for rw, cl, x in zip(rows, cols, vals)]
        # (item known?, user key referenced, rating): users 99 and 98 are in the needs as
        # held-out-only columns (their factors will simply not arrive)
        assert sorted(seen) == sorted([(1, 0, 3.0), (0, 1, 4.0), (1, 99, 5.0), (0, 98, 1.0)])
        for asked, copy in ((parts.by_user, by_item), (parts.by_item, by_user)):
            held = asked.toPandas()
            held = held[held.kind == REQUEST]
            for label, block in copy.groupby("block"):
                needs = needs_of(block)
                mine = held[held.target == label]
                wanted = np.sort(np.concatenate([decode_keys(r) for r in mine["rows"]]))
                np.testing.assert_array_equal(wanted, needs)
    finally:
        parts.unpersist()


def test_repeated_pairs_counts_every_rating_after_the_first_of_its_pair():
    from mfspark.engine.blocks import repeated_pairs

    rows, cols = np.array([5, 1, 5, 5, 2, 1]), np.array([7, 3, 7, 7, 3, 4])
    assert repeated_pairs(rows, cols) == 2  # (5, 7) three times
    order = np.lexsort((cols, rows))
    assert repeated_pairs(rows[order], cols[order], ordered=True) == 2
    assert repeated_pairs(rows[:2], cols[:2]) == repeated_pairs(rows[:0], cols[:0]) == 0


def test_packing_counts_repeated_pairs_in_training_and_held_out_ratings(spark):
    """Ratings repeating an earlier (user, item) pair are counted once per extra rating,
    whether they are training ratings (in both copies) or held-out ones (in one copy)."""
    users, items, ratings = random_ratings(20, 10, 0.4, seed=4)
    params = ALSParams(rank=2, num_user_blocks=3, num_item_blocks=2)
    clean = partition(frame_with_test(spark, (users, items, ratings),
                                      (np.array([0]), np.array([99]), np.array([1.0]))),
                      params, held_out=True)
    clean.unpersist()
    assert clean.repeated == 0
    train = (np.r_[users, users[:3], users[0]], np.r_[items, items[:3], items[0]],
             np.r_[ratings, ratings[:3], 1.0])  # 4 extra training ratings
    test = (np.array([0, 0, 1, 50, 50]), np.array([99, 99, 98, 0, 0]),
            np.array([1.0, 2.0, 3.0, 4.0, 4.0]))  # 2 extra held-out ratings
    parts = partition(frame_with_test(spark, train, test), params, held_out=True)
    parts.unpersist()
    assert parts.repeated == 6 and parts.count == len(train[0])


@pytest.mark.parametrize("budget", [128, 0])  # the whole fixed side, or routed rows
def test_half_steps_never_move_the_packed_ratings(spark, tmp_path, budget):
    """The plan of a half-step shuffles only the factors: above the cached packed blocks
    there is no exchange, whichever way the fixed side arrives; and every partition holds
    exactly one block."""
    from mfspark.engine.loop import fit
    from mfspark.engine.route import with_fixed

    users, items, ratings = random_ratings(20, 10, 0.3, seed=1)
    params = ALSParams(rank=2, iterations=1, num_user_blocks=4, num_item_blocks=3,
                       broadcast_mb=budget)
    parts = partition(indexed_frame(spark, users, items, ratings), params)
    try:
        fit(parts, params, str(tmp_path))
        frame = with_fixed(parts.by_user, f"{tmp_path}/iter-0001/item", budget == 0, 4,
                           gram=False)
        plan = frame.groupBy("block").count()._jdf.queryExecution().executedPlan().toString()
        # the plan down to the cached blocks (the factors' side is printed after it)
        top = plan.split("InMemoryRelation")[0]
        assert "Exchange" not in top, plan
        sizes = parts.by_user.groupBy("block").count().collect()
        assert len(sizes) == 4
        per_partition = parts.by_user.rdd.mapPartitions(
            lambda rows: [len({r.block for r in rows})])
        assert max(per_partition.collect()) == 1  # one block per partition, none split
    finally:
        parts.unpersist()


@pytest.mark.parametrize("keys", [np.arange(1000), np.arange(0, 64_000, 64),
                                  np.array([-5, 2**40, 7, 2**62])])
def test_blocks_are_balanced_whatever_the_ids(keys):
    """Keys hash to blocks: regular ID patterns (every 64th) still fill every block."""
    blocks = block_of(keys, 4)
    assert set(blocks.tolist()) <= {0, 1, 2, 3}
    if len(keys) >= 1000:
        counts = np.bincount(blocks, minlength=4)
        assert counts.min() > 0.8 * len(keys) / 4
    np.testing.assert_array_equal(block_of(keys, 4), blocks)  # a function of the key only


def test_partitioning_settings_are_scoped_and_respect_the_users_settings(spark):
    from mfspark.engine.blocks import CACHE_BATCH_ROWS, SPLIT_RATINGS, partition_settings

    arrow = "spark.sql.execution.arrow.maxRecordsPerBatch"
    cache = "spark.sql.inMemoryColumnarStorage.batchSize"
    assert spark.conf.get(arrow, None) is None and spark.conf.get(cache, None) is None
    with partition_settings(spark):
        assert spark.conf.get(arrow) == str(SPLIT_RATINGS)
        assert spark.conf.get(cache) == str(CACHE_BATCH_ROWS)
    assert spark.conf.get(arrow, None) is None and spark.conf.get(cache, None) is None
    spark.conf.set(arrow, "777")
    try:
        with partition_settings(spark):
            assert spark.conf.get(arrow) == "777"
            assert spark.conf.get(cache) == str(CACHE_BATCH_ROWS)
        assert spark.conf.get(arrow) == "777"
        assert spark.conf.get(cache, None) is None
    finally:
        spark.conf.unset(arrow)


def test_block_counts_fit_a_blocks_rows_in_the_budget(spark):
    """Unset block counts are twice the parallelism (local[2]: 4), raised so that a block's
    own rows and, when the other side is routed, the fixed rows it receives (one per rating
    at most) fit ``block_memory_mb``: 1.7M users x 20K items at rank 64 give 7 user blocks
    (their own rows) and 24 item blocks (the routed users)."""
    from mfspark.engine.loop import DataSize, block_counts

    size = DataSize(ratings=6_123_779, users=1_700_000, items=20_000)
    params = ALSParams(rank=64)
    per_block = (128 << 20) // (65 * 8)  # rows of 65 doubles in 128 MiB
    assert block_counts(spark, params, size) == {"user": -(-1_700_000 // per_block),
                                                 "item": -(-6_123_779 // per_block)} \
        == {"user": 7, "item": 24}
    assert block_counts(spark, params) == {"user": 4, "item": 4}  # size unknown
    assert block_counts(spark, ALSParams(rank=64, broadcast_mb=1024), size) == \
        {"user": 7, "item": 4}  # the users are broadcast: a block keeps the ones it needs
    assert block_counts(spark, ALSParams(rank=64, block_memory_mb=512), size) == \
        {"user": 4, "item": 6}
    assert block_counts(spark, ALSParams(rank=64, num_item_blocks=5), size)["item"] == 5
    assert block_counts(spark, ALSParams(rank=10), DataSize(5_000_000, 50_000, 20_000)) == \
        {"user": 4, "item": 4}  # the 5M benchmark: both sides broadcast and small
