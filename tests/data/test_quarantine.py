"""The bad-row policy: fail with counts and examples, or quarantine with a reason."""

from __future__ import annotations

import pytest

from mfspark.config import InputSpec
from mfspark.io.rejected import read_rejected
from mfspark.data.quarantine import screen
from mfspark.data.validate import InvalidRatingsError

GOOD = [("1", "1", "4", "10"), ("2", "1", "3", "11"), ("2", "2", "0.5", "12")]
SCHEMA = "user string, item string, rating string, timestamp string"


@pytest.mark.parametrize("bad,reason", [
    (("1", "2", "five", "1"), "non-numeric rating"),
    (("1", "2", None, "1"), "null rating"),
    (("1", "2", "NaN", "1"), "NaN or infinite rating"),
    (("1", "2", "inf", "1"), "NaN or infinite rating"),
    ((None, "2", "3", "1"), "null user ID"),
    (("1", None, "3", "1"), "null item ID"),
    (("1", "2", "5.5", "1"), "rating outside [0.5, 5.0]"),
])
def test_quarantine_sets_bad_rows_aside_with_reason(spark, tmp_path, bad, reason):
    df = spark.createDataFrame(GOOD + [bad, bad], SCHEMA)
    good, stats = screen(df, InputSpec(on_bad_rows="quarantine"), "r.csv", str(tmp_path / "rej"))
    assert stats.bad == {reason: 2}
    rejected = read_rejected(spark, str(tmp_path / "rej")).collect()
    assert [tuple(r) for r in rejected] == [(*bad, reason)] * 2  # original values + reason
    used = good.count()
    assert stats.rows == used + stats.rejected == 5  # nothing lost
    assert dict(good.dtypes) == {"user": "bigint", "item": "bigint", "rating": "double",
                                 "timestamp": "bigint"}


def test_fail_is_the_default_and_writes_nothing(spark, tmp_path):
    df = spark.createDataFrame(GOOD + [("1", "2", "x", "1")], SCHEMA)
    with pytest.raises(InvalidRatingsError, match=r"r.csv: 1 row\(s\) with a non-numeric rating "
                                                  r"\(of 4 rows read\)"):
        screen(df, InputSpec(), "r.csv", str(tmp_path / "rej"))
    assert not (tmp_path / "rej").exists()


def test_clean_input_clears_an_old_quarantine(spark, tmp_path):
    (tmp_path / "rej").mkdir()
    good, stats = screen(spark.createDataFrame(GOOD, SCHEMA), InputSpec(on_bad_rows="quarantine"),
                         "r.csv", str(tmp_path / "rej"))
    assert (stats.rows, stats.rejected, good.count()) == (3, 0, 3)
    assert not (tmp_path / "rej").exists()


def test_everything_rejected_is_an_error(spark, tmp_path):
    df = spark.createDataFrame([("1", "1", "9", "1")], SCHEMA)
    with pytest.raises(InvalidRatingsError, match="all 1 rows were rejected"):
        screen(df, InputSpec(on_bad_rows="quarantine"), "r.csv", str(tmp_path / "rej"))


def test_empty_input_is_an_error_under_either_policy(spark, tmp_path):
    df = spark.createDataFrame([], SCHEMA)
    for policy in ("fail", "quarantine"):
        with pytest.raises(InvalidRatingsError, match="no ratings were found"):
            screen(df, InputSpec(on_bad_rows=policy), "e.csv", str(tmp_path / "rej"))
