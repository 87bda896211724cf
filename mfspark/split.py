"""Seeded train/test splits that do not depend on how the data is partitioned."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_BUCKETS = 1_000_000


def random_split(ratings: DataFrame, test_fraction: float,
                 seed: int = 0) -> tuple[DataFrame, DataFrame]:
    """Split ratings into (train, test), each row independently with probability
    ``test_fraction`` of going to test.

    The draw is a hash of ``(user, item, seed)``, so the same data and seed give the same
    split whatever the number of partitions or executors (``DataFrame.randomSplit`` does not
    promise that).
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    draw = F.pmod(F.xxhash64("user", "item", F.lit(seed)), F.lit(_BUCKETS)) / _BUCKETS
    marked = ratings.withColumn("_draw", draw)
    train = marked.filter(F.col("_draw") >= test_fraction).drop("_draw")
    test = marked.filter(F.col("_draw") < test_fraction).drop("_draw")
    return train, test
