"""Plain tables in and out of the jobs: ID lists to read, result tables to write."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

TABLE_FORMATS = ("parquet", "csv")


def read_ids(spark: SparkSession, path: str, column: str) -> DataFrame:
    """A text file of IDs, one per line (blank lines ignored), as strings in ``column``."""
    return (spark.read.text(path).select(F.trim("value").alias(column))
            .filter(F.col(column) != ""))


def write_table(df: DataFrame, path: str, fmt: str, overwrite: bool) -> None:
    """Write ``df`` as Parquet or CSV with a header line; refuses an existing ``path``
    unless ``overwrite``."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"output format must be one of {TABLE_FORMATS}, got {fmt!r}")
    writer = df.write.mode("overwrite" if overwrite else "errorifexists")
    if fmt == "csv":
        writer.option("header", True).csv(path)
    else:
        writer.parquet(path)
