"""Reading rating logs: Parquet, delimited text and the MovieLens formats.

Whatever the source, :func:`read_ratings` returns a DataFrame with the canonical columns
``user``, ``item``, ``rating`` (double) and, when the source has it, ``timestamp``; IDs keep
their type (integers, longs or strings).  Text is read as strings and typed afterwards by
:mod:`mfspark.data.validate`, so that a malformed value is reported, never silently nulled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.config import InputSpec
from mfspark.io import fs

CANONICAL = ("user", "item", "rating", "timestamp")

#: Delimiter and header of the MovieLens formats (columns: user, item, rating, timestamp).
MOVIELENS = {"ml-100k": ("\t", False), "ml-dat": ("::", False), "ml-csv": (",", True)}

_DELIMITERS = ("::", "\t", ",", ";", "|", " ")


class InputFormatError(ValueError):
    """The ratings could not be read: unknown format, missing file or missing columns."""


def embedded_sample_path() -> str:
    """The Apache-2.0 sample ``sample_movielens_ratings.txt`` shipped inside pyspark.

    Looked up beside the imported ``pyspark`` package (pip install) and under ``SPARK_HOME``
    (a Spark distribution, or ``spark-submit``, whose driver imports pyspark from
    ``SPARK_HOME/python/lib/pyspark.zip``, where no data files are).
    """
    import pyspark

    relative = Path("data", "mllib", "als", "sample_movielens_ratings.txt")
    roots = [Path(pyspark.__file__).parent]
    if os.environ.get("SPARK_HOME"):
        roots.append(Path(os.environ["SPARK_HOME"]))
    candidates = [root / relative for root in roots]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise InputFormatError("the embedded sample is missing from this Spark install; looked at "
                           + ", ".join(map(str, candidates)) + " (pass --ratings instead)")


def _embedded_sample(spark: SparkSession) -> DataFrame:
    """The embedded sample, read on the driver so that executors need no local copy."""
    with open(embedded_sample_path(), encoding="utf-8") as handle:
        rows = [tuple(line.rstrip("\r\n").split("::")) for line in handle if line.strip()]
    return spark.createDataFrame(rows, schema="user string, item string, rating string, "
                                              "timestamp string")


def _first_line(spark: SparkSession, path: str) -> str:
    rows = spark.read.text(path).limit(1).collect()
    if not rows:
        raise InputFormatError(f"{path}: the input is empty")
    return rows[0][0].rstrip("\r")


def _looks_like_parquet(spark: SparkSession, path: str) -> bool:
    if path.rstrip("/").endswith(".parquet"):
        return True
    if not fs.exists(spark, path):
        raise InputFormatError(f"ratings path {path} does not exist")
    if not fs.is_dir(spark, path):
        return False
    return any(n.endswith(".parquet") for n in fs.list_names(spark, path))


def detect_format(spark: SparkSession, path: str) -> str:
    """Guess the format from the path's name, then from its first line."""
    if _looks_like_parquet(spark, path):
        return "parquet"
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name == "u.data":
        return "ml-100k"
    first = _first_line(spark, path)
    if name.endswith(".dat") or "::" in first:
        return "ml-dat"
    if first.replace(" ", "") == "userId,movieId,rating,timestamp":  # MovieLens ratings.csv
        return "ml-csv"
    return "csv"


def _sniff_csv(spark: SparkSession, path: str, spec: InputSpec) -> tuple[str, bool]:
    line = _first_line(spark, path)
    delimiter = spec.delimiter or next((d for d in _DELIMITERS if d in line), ",")
    if spec.header is not None:
        return delimiter, spec.header
    fields = [f.strip().strip('"') for f in line.split(delimiter)]
    named = {spec.user_col, spec.item_col, spec.rating_col} <= set(fields)
    rating_is_text = len(fields) > 2 and not re.fullmatch(r"[-+]?[\d.eE+-]+", fields[2])
    return delimiter, named or rating_is_text


def _rename(df: DataFrame, spec: InputSpec, path: str) -> DataFrame:
    wanted = [spec.user_col, spec.item_col, spec.rating_col]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputFormatError(
            f"{path}: column(s) {missing} not found; the input has columns {df.columns}. "
            "Name the columns with --user-col/--item-col/--rating-col (or [input] in the config).")
    cols = [F.col(f"`{spec.user_col}`").alias("user"), F.col(f"`{spec.item_col}`").alias("item"),
            F.col(f"`{spec.rating_col}`").alias("rating")]
    if spec.timestamp_col in df.columns:
        cols.append(F.col(f"`{spec.timestamp_col}`").alias("timestamp"))
    return df.select(*cols)


def _read_text(spark: SparkSession, path: str, delimiter: str, header: bool) -> DataFrame:
    # every field as a string: typing (and reporting bad values) is validate's job
    return spark.read.csv(path, sep=delimiter, header=header, inferSchema=False,
                          ignoreLeadingWhiteSpace=True, ignoreTrailingWhiteSpace=True,
                          mode="PERMISSIVE")


def _positional(df: DataFrame) -> DataFrame:
    if len(df.columns) < 3:
        raise InputFormatError(f"expected at least 3 fields (user, item, rating) per line, "
                               f"found {len(df.columns)}: {df.columns}")
    return df.toDF(*CANONICAL[:len(df.columns)], *df.columns[4:]).select(
        *CANONICAL[:min(4, len(df.columns))])


def read_ratings(spark: SparkSession, spec: InputSpec) -> DataFrame:
    """Read the ratings described by ``spec`` into the canonical columns."""
    if spec.path is None:
        return _embedded_sample(spark)
    path = spec.path
    fmt = spec.format if spec.format != "auto" else detect_format(spark, path)
    if fmt == "parquet":
        return _rename(spark.read.parquet(path), spec, path)
    if fmt in MOVIELENS:
        delimiter, header = MOVIELENS[fmt]
        return _positional(_read_text(spark, path, delimiter, header))
    delimiter, header = _sniff_csv(spark, path, spec)
    df = _read_text(spark, path, delimiter, header)
    return _rename(df, spec, path) if header else _positional(df)


def write_ratings(df: DataFrame, path: str, overwrite: bool = False) -> None:
    """Write ratings as Parquet (refusing to replace existing data unless ``overwrite``)."""
    df.write.mode("overwrite" if overwrite else "errorifexists").parquet(path)
