"""The ``long`` keys the engine works on, for IDs of any type, and the way back.

Integral IDs (``int``, ``long``, or ``float``/``double`` holding whole numbers, as
``StringIndexer`` writes them) are their own keys: no index, no join.  Other IDs (strings)
get dense keys ``0..n-1`` in ascending ID order, so that keys depend only on the set of
IDs, never on partitioning; the mapping stays a DataFrame (computed on the executors: the
driver only learns how many IDs each range partition holds).  Every output is keyed by the
original ID and type again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

#: The key of a held-out ID that training never saw (string IDs; never a dense key).
UNKNOWN_KEY = -(1 << 63)

_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


@dataclass(frozen=True)
class IdIndex:
    """How one side's IDs map to keys: the ID type, and for non-integral IDs the mapping."""

    id_type: T.DataType
    frame: DataFrame | None = None
    """``id``, ``key``: one row per ID; None when the IDs are their own keys."""

    def keyed(self, ratings: DataFrame, column: str) -> DataFrame:
        """``ratings`` with ``column`` replaced by its ``long`` key (:data:`UNKNOWN_KEY` for
        an ID the index does not hold)."""
        if self.frame is None:
            return ratings.withColumn(column, F.col(column).cast("long"))
        mapping = self.frame.select(F.col("id").alias(column), F.col("key").alias("_key"))
        joined = ratings.join(mapping, column, "left")
        return joined.withColumn(column, F.coalesce("_key", F.lit(UNKNOWN_KEY))).drop("_key")

    def with_ids(self, factors: DataFrame) -> DataFrame:
        """Factor rows keyed by ``key`` as rows keyed by the original ``id``."""
        if self.frame is None:
            return factors.select(F.col("key").cast(self.id_type).alias("id"),
                                  *[c for c in factors.columns if c != "key"])
        return (factors.join(self.frame, "key", "inner")
                .select("id", *[c for c in factors.columns if c != "key"]))

    def unpersist(self) -> None:
        if self.frame is not None:
            self.frame.unpersist()


def _whole_numbers(ratings: DataFrame, column: str) -> bool:
    """Whether every value of a floating-point column is a whole number within ``long``."""
    value = F.col(column)
    bad = ratings.filter(value.isNotNull() & ((value != F.floor(value))
                                              | (F.abs(value) >= F.lit(2.0 ** 63))))
    return not bad.limit(1).count()


def build_index(ratings: DataFrame, column: str, partitions: int | None = None) -> IdIndex:
    """The keys of the distinct values of ``ratings[column]`` (module docstring)."""
    kind = ratings.schema[column].dataType
    if isinstance(kind, _INTEGRAL) or (isinstance(kind, (T.FloatType, T.DoubleType))
                                       and _whole_numbers(ratings, column)):
        return IdIndex(kind)
    spark = ratings.sparkSession
    parts = partitions or int(spark.conf.get("spark.sql.shuffle.partitions", "8"))
    ranked = (ratings.select(F.col(column).alias("id")).distinct()
              .repartitionByRange(parts, "id").sortWithinPartitions("id")
              .select("id", F.spark_partition_id().alias("part"),
                      F.monotonically_increasing_id().alias("pos"))
              .persist(StorageLevel.MEMORY_AND_DISK))
    sizes = sorted((r["part"], r["n"], r["first"]) for r in ranked.groupBy("part").agg(
        F.count(F.lit(1)).alias("n"), F.min("pos").alias("first")).collect())
    offsets, total = [], 0
    for part, n, first in sizes:
        offsets.append((part, total - first))
        total += n
    shift = spark.createDataFrame(offsets, "part int, shift long")
    frame = (ranked.join(F.broadcast(shift), "part")
             .select("id", (F.col("pos") + F.col("shift")).alias("key"))
             .persist(StorageLevel.MEMORY_AND_DISK))
    frame.count()
    ranked.unpersist()
    return IdIndex(kind, frame)
