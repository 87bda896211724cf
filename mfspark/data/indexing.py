"""Mapping original user/item IDs (ints, longs or strings) to dense indices and back.

The solver works on dense ``int32`` indices ``0..n-1``; every output is keyed by the
original ID again.  Indices are assigned in ascending ID order, so they depend only on the
set of IDs, never on partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


@dataclass(frozen=True)
class IdIndex:
    """The distinct IDs of one side, in index order, with their rating counts.

    Attributes
    ----------
    ids : pyarrow.Array
        ``ids[k]`` is the original ID of dense index ``k`` (sorted ascending).
    counts : ndarray of int64
        Number of training ratings of each index.
    frame : DataFrame
        The same mapping as a Spark DataFrame with columns ``id`` and ``idx`` (int).
    """

    ids: pa.Array
    counts: np.ndarray
    frame: DataFrame

    def __len__(self) -> int:
        return len(self.ids)


def build_index(spark: SparkSession, ratings: DataFrame, column: str) -> IdIndex:
    """Index the distinct values of ``ratings[column]`` (collected on the driver, which holds
    one factor row per ID anyway)."""
    table = ratings.groupBy(column).count().toArrow()
    order = pc.sort_indices(table, sort_keys=[(column, "ascending")])
    ids = table.column(column).take(order).combine_chunks()
    counts = table.column("count").take(order).to_numpy().astype(np.int64)
    mapping = pa.table({"id": ids, "idx": pa.array(np.arange(len(ids), dtype=np.int32))})
    return IdIndex(ids=ids, counts=counts, frame=spark.createDataFrame(mapping))


#: At most this many user plus item IDs are broadcast for :func:`id_lookup` (256 MiB of
#: int64); beyond, the ratings are indexed by joins.
LOOKUP_MAX_IDS = 1 << 25


def id_lookup(users: IdIndex, items: IdIndex) -> tuple[np.ndarray, np.ndarray] | None:
    """The sorted user and item IDs as int64 arrays, for mapping IDs to indices by binary
    search inside the partitioning pass (:func:`mfspark.halfstep.partition_ratings`)
    instead of two joins; None when an ID type is not integral or there are more than
    :data:`LOOKUP_MAX_IDS` IDs."""
    if not all(pa.types.is_integer(side.ids.type) for side in (users, items)):
        return None
    if len(users) + len(items) > LOOKUP_MAX_IDS:
        return None
    return (users.ids.to_numpy(zero_copy_only=False).astype(np.int64),
            items.ids.to_numpy(zero_copy_only=False).astype(np.int64))


def with_indices(ratings: DataFrame, users: IdIndex, items: IdIndex,
                 how: str = "inner") -> DataFrame:
    """Add ``user_idx`` and ``item_idx`` to ratings (``how="left"`` keeps unknown IDs with
    null indices, for test data)."""
    user_map = users.frame.select(F.col("id").alias("user"), F.col("idx").alias("user_idx"))
    item_map = items.frame.select(F.col("id").alias("item"), F.col("idx").alias("item_idx"))
    return ratings.join(user_map, on="user", how=how).join(item_map, on="item", how=how)


def attach_ids(factors: DataFrame, index: IdIndex) -> DataFrame:
    """Replace the dense ``idx`` of a factor DataFrame by the original ``id``."""
    return (factors.join(index.frame, on="idx", how="inner")
            .select("id", *[c for c in factors.columns if c != "idx"]))
