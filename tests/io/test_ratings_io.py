"""Reading ratings in every supported format, with detection and column names."""

from __future__ import annotations

from pathlib import Path

import pytest
from chispa import assert_df_equality

from mfspark.config import InputSpec
from mfspark.io.ratings import InputFormatError, detect_format, read_ratings
from mfspark.data.validate import typed_ratings

from conftest import SHARED_DATA


def load(spark, **kw):
    df, stats = typed_ratings(read_ratings(spark, InputSpec(**kw)))
    return df, stats


def test_embedded_sample(spark):
    df, stats = load(spark)
    assert stats.rows == 1501 and (stats.user_type, stats.item_type) == ("bigint", "bigint")
    assert df.columns == ["user", "item", "rating", "timestamp"]
    assert df.first().asDict() == {"user": 0, "item": 2, "rating": 3.0, "timestamp": 1424380312}


def test_movielens_100k(spark, ml100k_path):
    assert detect_format(spark, ml100k_path) == "ml-100k"
    df, stats = load(spark, path=ml100k_path)
    assert stats.rows == 100_000
    assert df.first().asDict() == {"user": 196, "item": 242, "rating": 3.0,
                                   "timestamp": 881250949}


def test_movielens_latest_small_crlf(spark):
    path = str(SHARED_DATA / "ml-latest-small" / "ratings.csv")
    assert detect_format(spark, path) == "ml-csv"
    df, stats = load(spark, path=path)
    assert stats.rows == 100_836
    assert df.first().asDict() == {"user": 1, "item": 1, "rating": 4.0, "timestamp": 964982703}
    # detection: a CSV with a header whose names are not ours still reads positionally?
    # no: auto-detected CSV is read by name, so the names must be given
    df2, _ = load(spark, path=path, user_col="userId", item_col="movieId")
    assert_df_equality(df, df2)


def test_double_colon_dat(spark, tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::978300760\n1::11::3.5::978302109\n")
    df, stats = load(spark, path=str(path))
    assert [tuple(r) for r in df.collect()] == [(1, 10, 5.0, 978300760), (1, 11, 3.5, 978302109)]


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
def test_csv_any_delimiter_with_header_and_string_ids(spark, tmp_path, delimiter):
    path = tmp_path / "r.csv"
    rows = ["u", "p", "stars"], ["alice", "item-1", "4.5"], ["bob", "item-2", "2"]
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n")
    df, stats = load(spark, path=str(path), user_col="u", item_col="p", rating_col="stars")
    assert (stats.user_type, stats.item_type) == ("string", "string")
    assert [tuple(r) for r in df.collect()] == [("alice", "item-1", 4.5), ("bob", "item-2", 2.0)]


def test_headerless_csv_is_positional(spark, tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("5,7,1.5\n6,8,2.5\n")
    df, _ = load(spark, path=str(path))
    assert [tuple(r) for r in df.collect()] == [(5, 7, 1.5), (6, 8, 2.5)]


def test_parquet_keeps_types_and_uses_column_names(spark, tmp_path):
    src = spark.createDataFrame([(10_000_000_000, "a", 3.0), (10_000_000_001, "b", 4.0)],
                                "uid long, iid string, score float")
    src.write.parquet(str(tmp_path / "p"))
    df, stats = load(spark, path=str(tmp_path / "p"), user_col="uid", item_col="iid",
                     rating_col="score")
    assert (stats.user_type, stats.item_type) == ("bigint", "string")
    # a directory of Parquet files has no row order: compare sorted
    assert sorted(tuple(r) for r in df.collect()) == [(10_000_000_000, "a", 3.0),
                                                      (10_000_000_001, "b", 4.0)]


def test_missing_columns_are_named(spark, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(InputFormatError, match=r"column\(s\) \['user', 'item'\] not found; the "
                       r"input has columns \['userId', 'movieId', 'rating'\]"):
        read_ratings(spark, InputSpec(path=str(path)))


def test_missing_path_is_reported(spark, tmp_path):
    with pytest.raises(InputFormatError, match="does not exist"):
        read_ratings(spark, InputSpec(path=str(tmp_path / "nope.csv")))


def test_embedded_sample_found_under_spark_home(monkeypatch, tmp_path):
    """Under spark-submit the driver imports pyspark from SPARK_HOME/python/lib/pyspark.zip,
    which holds no data files: the sample is then found under SPARK_HOME."""
    import pyspark

    from mfspark.io.ratings import embedded_sample_path

    home = Path(pyspark.__file__).parent
    monkeypatch.setattr(pyspark, "__file__", str(home / "python" / "lib" / "pyspark.zip"
                                                 / "pyspark" / "__init__.py"))
    monkeypatch.setenv("SPARK_HOME", str(home))
    assert embedded_sample_path() == str(home / "data" / "mllib" / "als"
                                         / "sample_movielens_ratings.txt")
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    with pytest.raises(InputFormatError, match=f"looked at .*pyspark.zip.*, {tmp_path}/data"):
        embedded_sample_path()
