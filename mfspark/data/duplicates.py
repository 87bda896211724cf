"""Several ratings of one (user, item) pair, and the policies that resolve them.

The model has one rating per pair, so duplicates must be decided on, never kept twice:
``fail`` (the default) stops with the number of duplicated pairs and a few of them,
``last`` keeps the rating with the latest timestamp (ties: the higher rating, so the choice
never depends on partitioning), ``mean`` averages them (and keeps the latest timestamp).
``merged`` counts the rows folded away: rows in duplicated pairs minus the pairs.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mfspark.config import DUPLICATE_POLICIES
from mfspark.data.validate import first_rows
from mfspark.errors import MfsparkValueError


class DuplicateRatingsError(MfsparkValueError):
    """The input rates some (user, item) pair more than once and the policy is ``fail``."""


def _rating(policy: str) -> Column:
    """The kept rating of a pair: the latest's (ties: the higher) or the mean."""
    if policy == "last":
        return F.max(F.struct("timestamp", "rating"))["rating"]
    return F.avg("rating")


def merge_duplicates(df: DataFrame, policy: str, source: str = "input") -> tuple[DataFrame, int]:
    """Resolve duplicate (user, item) pairs of typed ratings by ``policy``.

    Returns the ratings with one row per pair and the number of rows merged away; when there
    are no duplicates ``df`` itself is returned (no extra shuffle downstream).
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    has_time = "timestamp" in df.columns
    if policy == "last" and not has_time:
        raise DuplicateRatingsError(
            f"{source}: duplicates = \"last\" needs a timestamp column to tell which rating "
            f"is the latest; the input has columns {df.columns}. Use \"mean\" or \"fail\".")
    aggs = [F.count(F.lit(1)).alias("n"), _rating(policy).alias("rating")]
    if has_time:
        aggs.append(F.max("timestamp").alias("timestamp"))
    pairs = df.groupBy("user", "item").agg(*aggs)
    found = pairs.agg(F.sum(F.when(F.col("n") > 1, 1).otherwise(0)).alias("pairs"),
                      F.sum(F.col("n") - 1).alias("merged")).first()
    merged = int(found["merged"] or 0)
    if merged == 0:
        return df, 0
    if policy == "fail":
        examples = first_rows(pairs.select("user", "item", F.col("n").alias("ratings")),
                              F.col("ratings") > 1)
        raise DuplicateRatingsError(
            f"{source}: {found['pairs']} (user, item) pair(s) are rated more than once "
            f"({merged} extra row(s)). No row is dropped silently: set duplicates = \"last\" "
            f"(latest timestamp wins) or \"mean\" (--duplicates last|mean). First duplicated "
            f"pairs: {examples}")
    return pairs.select(*df.columns), merged
