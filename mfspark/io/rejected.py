"""The quarantine output: rows set aside by ``on_bad_rows = "quarantine"``.

``OUT/rejected/`` is Parquet with the canonical columns as read (``user``, ``item``,
``rating``, [``timestamp``], text sources as strings) plus ``reason``.  It always describes
the latest run: a run with nothing to reject removes an older one.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mfspark.io import fs


def replace_rejected(spark: SparkSession, rejected: DataFrame | None, path: str) -> None:
    """Write ``rejected`` to ``path`` (replacing what is there), or just clear ``path``."""
    fs.delete(spark, path)
    if rejected is not None:
        rejected.write.mode("overwrite").parquet(path)


def read_rejected(spark: SparkSession, path: str) -> DataFrame:
    """The rows a run set aside, with their ``reason``."""
    return spark.read.parquet(path)
