"""ID mapping round trips; the split is deterministic and partition-independent."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F

from mfspark.data.indexing import UNKNOWN_KEY, build_index
from mfspark.data.split import random_split


def test_integral_ids_are_their_own_keys_and_strings_get_dense_sorted_keys(spark):
    df = spark.createDataFrame(
        [("bob", 30_000_000_000, 1.0), ("alice", 5, 2.0), ("bob", 5, 3.0), ("carol", 7, 4.0)],
        "user string, item long, rating double")
    users, items = build_index(df, "user"), build_index(df, "item")
    assert items.frame is None  # no index, no join: the long IDs are the keys
    assert sorted(tuple(r) for r in users.frame.collect()) == [
        ("alice", 0), ("bob", 1), ("carol", 2)]  # ascending ID order
    keyed = items.keyed(users.keyed(df, "user"), "item")
    assert keyed.schema["user"].dataType.simpleString() == "bigint"
    assert sorted(tuple(r) for r in keyed.collect()) == [
        (0, 5, 2.0), (1, 5, 3.0), (1, 30_000_000_000, 1.0), (2, 7, 4.0)]
    factors = spark.createDataFrame([(0, 0.5), (2, 1.5)], "key long, bias double")
    back = users.with_ids(factors)
    assert_df_equality(back, spark.createDataFrame([("alice", 0.5), ("carol", 1.5)],
                                                   "id string, bias double"),
                       ignore_row_order=True, ignore_nullable=True)
    by_item = items.with_ids(spark.createDataFrame([(7, 0.1)], "key long, bias double"))
    assert by_item.schema["id"].dataType.simpleString() == "bigint"


def test_dense_keys_do_not_depend_on_partitioning(spark):
    names = [f"u{i:05d}" for i in range(3000)]
    df = spark.createDataFrame([(n, 1, 1.0) for n in names], "user string, item int, rating double")
    one = build_index(df, "user", partitions=1).frame.collect()
    many = build_index(df.repartition(7), "user", partitions=5).frame.collect()
    assert sorted(map(tuple, one)) == sorted(map(tuple, many)) == [
        (n, k) for k, n in enumerate(names)]


def test_whole_doubles_are_keys_and_unknown_strings_get_the_unknown_key(spark):
    doubles = spark.createDataFrame([(1.0, 2.0, 3.0), (4.0, 2.0, 1.0)],
                                    "user double, item double, rating double")
    index = build_index(doubles, "user")
    assert index.frame is None
    assert index.with_ids(spark.createDataFrame([(4, 0.0)], "key long, bias double")) \
        .schema["id"].dataType.simpleString() == "double"
    halves = spark.createDataFrame([(1.5, 2.0, 3.0)], "user double, item double, rating double")
    assert build_index(halves, "user").frame is not None  # not whole numbers: indexed
    train = spark.createDataFrame([("a", 1, 1.0)], "user string, item long, rating double")
    test = spark.createDataFrame([("a", 2, 1.0), ("z", 1, 2.0)],
                                 "user string, item long, rating double")
    users = build_index(train, "user")
    got = sorted(tuple(r) for r in users.keyed(test, "user").select("user", "item").collect())
    assert got == [(UNKNOWN_KEY, 1), (0, 2)]


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
