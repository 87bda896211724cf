"""Bad input is refused with a message that says what and where; nothing is dropped."""

from __future__ import annotations

import pytest

from mfspark.data.validate import InvalidRatingsError, reasons, tag, typed_ratings


def frame(spark, rows):
    return spark.createDataFrame(rows, "user string, item string, rating string")


@pytest.mark.parametrize("bad,reason", [
    (("1", "2", "five"), "1 row(s) with a non-numeric rating"),
    (("1", "2", None), "1 row(s) with a null rating"),
    (("1", "2", "NaN"), "1 row(s) with a NaN or infinite rating"),
    (("1", "2", "Infinity"), "1 row(s) with a NaN or infinite rating"),
    (("1", "2", "-Infinity"), "1 row(s) with a NaN or infinite rating"),
    ((None, "2", "3"), "1 row(s) with a null user ID"),
    (("1", None, "3"), "1 row(s) with a null item ID"),
    (("1", "2", "7"), "1 row(s) with a rating outside [0.5, 5.0]"),
    (("1", "2", "0"), "1 row(s) with a rating outside [0.5, 5.0]"),
])
def test_bad_rows_fail_with_count_and_example(spark, bad, reason):
    df = frame(spark, [("1", "1", "4"), bad, ("2", "1", "3")])
    with pytest.raises(InvalidRatingsError) as err:
        typed_ratings(df, source="r.csv", rating_range=(0.5, 5.0))
    message = str(err.value)
    assert message.startswith(f"r.csv: {reason} (of 3 rows read)")
    assert repr(bad[2]) in message  # the offending row is shown
    assert "--on-bad-rows quarantine" in message


def test_range_bounds_are_inclusive_and_can_be_off(spark):
    df = frame(spark, [("1", "1", "0.5"), ("1", "2", "5.0"), ("2", "1", "-3")])
    with pytest.raises(InvalidRatingsError, match=r"1 row\(s\) with a rating outside \[0.5, 5.0\]"):
        typed_ratings(df, rating_range=(0.5, 5.0))
    typed, stats = typed_ratings(df, rating_range=None)
    assert stats.rows == 3 and sorted(r.rating for r in typed.collect()) == [-3.0, 0.5, 5.0]
    assert (stats.users, stats.items) == (2, 2)  # distinct IDs, which size the blocks


def test_first_problem_is_the_reason(spark):
    df = frame(spark, [(None, None, "x"), ("1", "1", None), ("1", "1", "9"), ("1", "1", "2")])
    got = [r.reason for r in tag(df, (1.0, 5.0)).collect()]
    assert got == ["null user ID", "null rating", "rating outside [1.0, 5.0]", None]
    assert reasons(None)[-1] == "NaN or infinite rating"


def test_empty_input(spark):
    with pytest.raises(InvalidRatingsError, match="no ratings were found"):
        typed_ratings(frame(spark, []), source="empty.csv")


def test_id_types_are_inferred(spark):
    df, stats = typed_ratings(frame(spark, [("1", "x1", "4"), ("20000000000", "x2", "3.5")]))
    assert (stats.user_type, stats.item_type) == ("bigint", "string")
    assert [tuple(r) for r in df.collect()] == [(1, "x1", 4.0), (20000000000, "x2", 3.5)]
