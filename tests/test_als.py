"""The distributed ALS loop against the pure-NumPy reference and other oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark import als, reference
from mfspark.config import ALSParams
from mfspark.solve import init_factors

from conftest import random_ratings


def indexed_frame(spark, users, items, ratings):
    pdf = pd.DataFrame({"user_idx": users.astype(np.int32), "item_idx": items.astype(np.int32),
                        "rating": ratings.astype(np.float64)})
    return spark.createDataFrame(pdf)


def fit_spark(spark, users, items, ratings, params, work_dir, initial):
    parts = als.partition(indexed_frame(spark, users, items, ratings),
                          np.bincount(users), np.bincount(items), params)
    try:
        return als.fit(parts, params, work_dir, initial=initial)
    finally:
        parts.unpersist()


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("reg_scale,reg", [("none", 2.0), ("count", 0.1)])
@pytest.mark.parametrize("iterations", [1, 5])
def test_spark_equals_numpy_reference(spark, tmp_path, reg_scale, reg, iterations):
    users, items, ratings = random_ratings(40, 25, 0.3, seed=11)
    params = ALSParams(rank=4, reg=reg, reg_scale=reg_scale, iterations=iterations,
                       num_user_blocks=3, num_item_blocks=2)
    V0 = init_factors(25, 4, seed=5)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), V0)
    ref = reference.als(users, items, ratings, 40, 25, V0, reg, reg_scale, iterations)
    assert got.mu == pytest.approx(ref.mu, rel=1e-12)
    for mine, theirs in [(got.users.factors, ref.user_factors), (got.users.bias, ref.user_bias),
                         (got.items.factors, ref.item_factors), (got.items.bias, ref.item_bias)]:
        assert rel_err(mine, theirs) <= 1e-6
    objectives = [h["objective"] for h in got.history]
    np.testing.assert_allclose(objectives, ref.objectives, rtol=1e-9)


def test_objective_never_increases(spark, tmp_path):
    users, items, ratings = random_ratings(60, 40, 0.2, seed=3)
    params = ALSParams(rank=6, reg=0.05, reg_scale="count", iterations=8, num_user_blocks=2,
                       num_item_blocks=3)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), init_factors(40, 6, 1))
    trail = []
    for h in got.history:
        trail += [h["objective_after_user_step"], h["objective"]]
    steps = np.diff(trail)
    assert np.all(steps <= 1e-9 * np.abs(np.array(trail[:-1]))), trail
    assert trail[-1] < trail[0]


def test_planted_low_rank_is_recovered(spark, tmp_path):
    rng = np.random.default_rng(0)
    n_users, n_items, rank = 80, 60, 3
    U, V = rng.standard_normal((n_users, rank)), rng.standard_normal((n_items, rank))
    b, c = rng.standard_normal(n_users), rng.standard_normal(n_items)
    users, items, _ = random_ratings(n_users, n_items, 0.5, seed=4)
    ratings = np.sum(U[users] * V[items], axis=1) + b[users] + c[items] + 3.0
    params = ALSParams(rank=rank, reg=1e-6, reg_scale="none", iterations=25,
                       num_user_blocks=2, num_item_blocks=2)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path),
                    init_factors(n_items, rank, 9))
    assert got.history[-1]["train_rmse"] < 1e-3
    assert got.history[0]["train_rmse"] > 10 * got.history[-1]["train_rmse"]


def test_stored_items_are_exact_least_squares_given_stored_users(spark, tmp_path):
    users, items, ratings = random_ratings(30, 20, 0.3, seed=8)
    params = ALSParams(rank=3, reg=0.3, reg_scale="count", iterations=3, num_user_blocks=2,
                       num_item_blocks=2)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), init_factors(20, 3, 2))
    U, b, mu = got.users.factors, got.users.bias, got.mu
    for j in range(20):
        sel = items == j
        X = np.hstack([U[users[sel]], np.ones((sel.sum(), 1))])
        y = ratings[sel] - b[users[sel]] - mu
        lam = 0.3 * sel.sum()
        A = np.vstack([X, np.sqrt(lam) * np.eye(4)])
        w = np.linalg.lstsq(A, np.concatenate([y, np.zeros(4)]), rcond=None)[0]
        np.testing.assert_allclose(got.items.factors[j], w[:3], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.items.bias[j], w[3], rtol=1e-8, atol=1e-10)


def test_half_steps_group_by_block_without_reshuffling(spark):
    from mfspark.halfstep import partition_ratings

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
    from mfspark.halfstep import partition_ratings, unpack

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
    from mfspark.indexing import build_index, id_lookup, with_indices

    users, items, ratings = random_ratings(40, 25, 0.3, seed=4)
    raw = spark.createDataFrame(pd.DataFrame({
        "user": 10_000_000_000 - 7 * users.astype(np.int64),  # sparse, descending long IDs
        "item": (3 * items + 5).astype(np.int32), "rating": ratings.astype(np.float64)}))
    u_index, i_index = build_index(spark, raw, "user"), build_index(spark, raw, "item")
    lookup = id_lookup(u_index, i_index)
    assert lookup is not None and len(lookup[0]) == len(set(users.tolist()))
    params = ALSParams(rank=2, num_user_blocks=3, num_item_blocks=2)
    looked = als.partition_ids(raw, u_index, i_index, params)
    joined = als.partition(with_indices(raw, u_index, i_index), u_index.counts, i_index.counts,
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
    from mfspark.halfstep import dense_index

    ids = np.array(ids, dtype=np.int64)
    expected = [int(np.searchsorted(ids, v)) for v in (20, 3, 8, 8)]
    assert dense_index(ids, np.array([20, 3, 8, 8]), "user").tolist() == expected
    with pytest.raises(ValueError, match=r"item ID 9 is not in the item index \(2 ratings"):
        dense_index(ids, np.array([3, 9, 21]), "item")
    for unknown in (2, -7, 21, 2**40):
        with pytest.raises(ValueError, match=f"user ID {unknown} is not in the user index"):
            dense_index(ids, np.array([8, unknown]), "user")


def test_same_model_whatever_the_blocks_and_partitions(spark, tmp_path):
    """Same data, seed and settings: the same factors (<= 1e-9) with 1, 3 and 8 blocks per
    side, the input spread over different partition counts."""
    users, items, ratings = random_ratings(50, 35, 0.25, seed=13)
    fits = {}
    for blocks, slices in [(1, 1), (3, 5), (8, 2)]:
        params = ALSParams(rank=5, reg=0.1, iterations=4, num_user_blocks=blocks,
                           num_item_blocks=blocks)
        frame = indexed_frame(spark, users, items, ratings).repartition(slices)
        parts = als.partition(frame, np.bincount(users), np.bincount(items), params)
        try:
            fits[blocks] = als.fit(parts, params, str(tmp_path / str(blocks)))
        finally:
            parts.unpersist()
    for blocks in (3, 8):
        for side in ("users", "items"):
            a, b = getattr(fits[1], side), getattr(fits[blocks], side)
            np.testing.assert_allclose(b.factors, a.factors, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=1e-9)
        assert [h["objective"] for h in fits[blocks].history] == pytest.approx(
            [h["objective"] for h in fits[1].history], rel=1e-12)


def test_in_memory_floor_equals_reference():
    from mfspark.local import fit_in_memory

    users, items, ratings = random_ratings(30, 20, 0.3, seed=5)
    V0 = init_factors(20, 3, seed=1)
    got = fit_in_memory(users, items, ratings, 30, 20,
                        ALSParams(rank=3, reg=0.5, reg_scale="none", iterations=3), V0)
    ref = reference.als(users, items, ratings, 30, 20, V0, 0.5, "none", 3)
    assert rel_err(got.users.factors, ref.user_factors) <= 1e-9
    assert rel_err(got.items.bias, ref.item_bias) <= 1e-9
    np.testing.assert_allclose([h["objective"] for h in got.history], ref.objectives, rtol=1e-9)
