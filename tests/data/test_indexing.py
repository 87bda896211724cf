"""ID mapping round trips; the split is deterministic and partition-independent."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F

from mfspark.data.indexing import attach_ids, build_index, with_indices
from mfspark.data.split import random_split


def test_string_and_long_ids_round_trip(spark):
    df = spark.createDataFrame(
        [("bob", 30_000_000_000, 1.0), ("alice", 5, 2.0), ("bob", 5, 3.0), ("carol", 7, 4.0)],
        "user string, item long, rating double")
    users, items = build_index(spark, df, "user"), build_index(spark, df, "item")
    assert users.ids.to_pylist() == ["alice", "bob", "carol"]
    assert items.ids.to_pylist() == [5, 7, 30_000_000_000]
    assert list(users.counts) == [1, 2, 1] and list(items.counts) == [2, 1, 1]
    indexed = with_indices(df, users, items)
    back = attach_ids(indexed.select(F.col("user_idx").alias("idx"), "rating"), users)
    expected = spark.createDataFrame([("alice", 2.0), ("bob", 1.0), ("bob", 3.0), ("carol", 4.0)],
                                     "id string, rating double")
    assert_df_equality(back, expected, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(indexed.select("user", "item", "rating"), df, ignore_row_order=True,
                       ignore_nullable=True)


def test_unknown_ids_get_null_indices_in_left_join(spark):
    train = spark.createDataFrame([(1, 1, 1.0)], "user long, item long, rating double")
    test = spark.createDataFrame([(1, 2, 1.0), (3, 1, 2.0)], "user long, item long, rating double")
    users, items = build_index(spark, train, "user"), build_index(spark, train, "item")
    rows = {(r.user, r.item): (r.user_idx, r.item_idx)
            for r in with_indices(test, users, items, how="left").collect()}
    assert rows == {(1, 2): (0, None), (3, 1): (None, 0)}


def test_split_is_disjoint_complete_and_partition_independent(spark):
    df = spark.range(20_000).select((F.col("id") % 500).alias("user"),
                                    (F.col("id") / 500).cast("long").alias("item"),
                                    F.lit(1.0).alias("rating"))
    train, test = random_split(df, 0.2, seed=3)
    assert train.count() + test.count() == 20_000
    assert train.join(test, ["user", "item"]).count() == 0
    assert 0.18 < test.count() / 20_000 < 0.22
    _, test2 = random_split(df.repartition(7), 0.2, seed=3)
    assert_df_equality(test, test2, ignore_row_order=True)
    _, other = random_split(df, 0.2, seed=4)
    assert test.exceptAll(other).count() > 0
