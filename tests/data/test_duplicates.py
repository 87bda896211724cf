"""Repeated (user, item) pairs: fail, keep the latest, or average; count what is merged."""

from __future__ import annotations

import pytest

from mfspark.data.duplicates import DuplicateRatingsError, merge_duplicates

ROWS = [(1, 10, 4.0, 100), (1, 10, 2.0, 300), (1, 10, 3.0, 200),   # 3 ratings of one pair
        (2, 10, 5.0, 100), (2, 10, 1.0, 100),                      # a timestamp tie
        (3, 11, 2.5, 50)]
SCHEMA = "user long, item long, rating double, timestamp long"


def merged_rows(df):
    return sorted(tuple(r) for r in df.collect())


def test_fail_names_the_pairs_and_counts(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    with pytest.raises(DuplicateRatingsError) as err:
        merge_duplicates(df, "fail", "r.csv")
    message = str(err.value)
    assert "r.csv: 2 (user, item) pair(s) are rated more than once (3 extra row(s))" in message
    assert "'user': 1, 'item': 10, 'ratings': 3" in message and "--duplicates" in message


def test_last_keeps_the_latest_rating(spark):
    out, merged = merge_duplicates(spark.createDataFrame(ROWS, SCHEMA), "last")
    assert merged == 3 and len(ROWS) == out.count() + merged
    # a tie in timestamps keeps the higher rating: the result never depends on partitioning
    assert merged_rows(out) == [(1, 10, 2.0, 300), (2, 10, 5.0, 100), (3, 11, 2.5, 50)]


def test_mean_averages(spark):
    out, merged = merge_duplicates(spark.createDataFrame(ROWS, SCHEMA), "mean")
    assert merged == 3
    assert merged_rows(out) == [(1, 10, 3.0, 300), (2, 10, 3.0, 100), (3, 11, 2.5, 50)]


def test_mean_without_timestamps(spark):
    df = spark.createDataFrame([(1, 1, 1.0), (1, 1, 2.0)], "user long, item long, rating double")
    out, merged = merge_duplicates(df, "mean")
    assert (merged, merged_rows(out)) == (1, [(1, 1, 1.5)])


def test_last_needs_timestamps(spark):
    df = spark.createDataFrame([(1, 1, 1.0), (1, 1, 2.0)], "user long, item long, rating double")
    with pytest.raises(DuplicateRatingsError, match="needs a timestamp column.*'rating'"):
        merge_duplicates(df, "last")


def test_no_duplicates_returns_the_input_unchanged(spark):
    df = spark.createDataFrame(ROWS[2:4] + ROWS[5:], SCHEMA)
    for policy in ("fail", "last", "mean"):
        out, merged = merge_duplicates(df, policy)
        assert merged == 0 and out is df
